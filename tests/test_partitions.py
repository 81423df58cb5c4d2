"""Daily partitions of records and events (``appendq.db.partitions``, migration 0010): rows route
to their day, a day made late takes its rows out of DEFAULT, the worker creates the days ahead,
and ``prune`` drops whole days while keeping every row of a batch that must stay. Real
PostgreSQL; batches made by the drain's own store functions."""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, func, select, text, update
from sqlalchemy.pool import NullPool

from appendq.batches import prune
from appendq.clock import utcnow
from appendq.db import partitions
from appendq.db.engine import alembic_config, migrate
from appendq.db.models import Batch, BatchStatus, Event, Record
from appendq.queue.item import QueuedRecord
from appendq.runtime import Runtime
from tests.conftest import phone
from tests.test_audit import make_batch
from tests.test_infra import fresh_database_url  # noqa: F401  (a fixture)
from workers.tasks import _partitions_ahead


def v7_at(moment: datetime) -> str:
    """A version-7 record id made at ``moment`` (as ``new_record_ids`` makes them then)."""
    ms = int(moment.timestamp() * 1000)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 64) & 0xFFF) << 64 | (0x2 << 62)
    return str(uuid.UUID(int=value | (rand & ((1 << 62) - 1))))


def leads_at(moment: datetime, n: int, start: int) -> list[QueuedRecord]:
    return [
        QueuedRecord(
            v7_at(moment + timedelta(seconds=i)),
            moment.timestamp() + i,
            {"phone1": phone(start + i)},
        )
        for i in range(n)
    ]


def pairs(result: Any) -> dict[Any, Any]:
    return {key: value for key, value in result}


def where(rt: Runtime, table: str) -> dict[str, str]:
    """Each row's partition, by id."""
    with rt.sessions() as s:
        rows = s.execute(text(f"SELECT id::text, tableoid::regclass::text FROM {table}"))
        return pairs(rows)


def age(rt: Runtime, batch_id: int, moment: datetime) -> None:
    """The batch created and last changed at ``moment``, its events then too (they move to that
    day's partition)."""
    with rt.sessions() as s, s.begin():
        s.execute(
            update(Batch).where(Batch.id == batch_id).values(created_at=moment, updated_at=moment)
        )
        s.execute(update(Event).where(Event.batch_id == batch_id).values(at=moment))


def test_rows_route_to_their_day_and_a_late_day_takes_its_rows_out_of_default(rt: Runtime) -> None:
    # Given records of today, of 20 days ago (no partition for it yet) and an id of another
    # layout, When they are persisted, Then today's are in today's partition and the others in
    # DEFAULT; When the old day is created, Then its records move into it, the odd id stays.
    now = utcnow()
    old = now - timedelta(days=20)
    fresh, late = leads_at(now, 2, 0), leads_at(old, 2, 10)
    odd = [QueuedRecord(str(uuid.uuid4()), now.timestamp(), {"phone1": phone(20)})]
    make_batch(rt, BatchStatus.APPENDED, fresh + late + odd)
    placed = where(rt, "records")
    assert {placed[r.id] for r in fresh} == {partitions.RECORDS.name(now.date())}
    assert {placed[r.id] for r in late + odd} == {"records_default"}
    with rt.sessions() as s, s.begin():
        made = partitions.ensure(s.connection(), [old.date()])
    assert made == [partitions.RECORDS.name(old.date()), partitions.EVENTS.name(old.date())]
    placed = where(rt, "records")
    assert {placed[r.id] for r in late} == {partitions.RECORDS.name(old.date())}
    assert placed[odd[0].id] == "records_default"
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Record)) == 5


def test_the_worker_creates_the_days_ahead_at_most_once_an_hour(rt: Runtime) -> None:
    # Given the partitions of the last day ahead dropped, When a tick checks the partitions, Then
    # they are back; dropped again, the next tick within the hour leaves them (checked once).
    last = partitions.today() + timedelta(days=partitions.AHEAD_DAYS)
    names = [t.name(last) for t in partitions.TABLES]

    def drop() -> None:
        with rt.sessions() as s, s.begin():
            for name in names:
                s.execute(text(f"DROP TABLE {name}"))

    def have() -> bool:
        with rt.sessions() as s:
            return last in partitions.existing(s.connection(), partitions.RECORDS)

    drop()
    drainer = rt.drainer()
    _partitions_ahead(drainer)
    assert have()
    drop()
    _partitions_ahead(drainer)
    assert not have()
    rt.redis.delete(drainer.keys.partitions)
    _partitions_ahead(drainer)
    assert have()


def test_prune_drops_whole_old_days_and_keeps_the_batches_that_must_stay(rt: Runtime) -> None:
    # Given a day 40 days ago with its partitions, holding: two finished batches last changed
    # then (one also with a record today), a held batch, and a finished batch retried 5 days
    # ago; When prune runs with a 30-day cutoff, Then that day's partitions are dropped, the two
    # finished batches are gone with every record and event (today's record too), and the held
    # and retried batches keep every record and event (moved to DEFAULT), the report exact.
    now = utcnow()
    old = now - timedelta(days=40)
    with rt.sessions() as s, s.begin():
        partitions.ensure(s.connection(), [old.date()])
    done_a = make_batch(rt, BatchStatus.APPENDED, leads_at(old, 3, 0))
    done_b = make_batch(rt, BatchStatus.REJECTED, leads_at(old, 2, 10) + leads_at(now, 1, 12))
    held = make_batch(rt, BatchStatus.HELD, leads_at(old, 2, 20))
    retried = make_batch(rt, BatchStatus.APPENDED, leads_at(old, 2, 30))
    for batch_id in (done_a, done_b, held):
        age(rt, batch_id, old)
    age(rt, retried, old)
    with rt.sessions() as s, s.begin():
        s.execute(
            update(Batch).where(Batch.id == retried).values(updated_at=now - timedelta(days=5))
        )
        events = pairs(s.execute(select(Event.batch_id, func.count()).group_by(Event.batch_id)))
    cutoff = prune.cutoff_for(30)
    with rt.sessions() as s:
        assert prune.preview_prune(s, cutoff) == prune.PruneReport(cutoff, 2, 6)
    report = prune.prune(rt.sessions, cutoff)
    assert report == prune.PruneReport(cutoff, 2, 6, events[done_a] + events[done_b], partitions=2)
    with rt.sessions() as s:
        conn = s.connection()
        assert old.date() not in partitions.existing(conn, partitions.RECORDS)
        assert old.date() not in partitions.existing(conn, partitions.EVENTS)
        assert set(s.scalars(select(Batch.id))) == {held, retried}
        left = pairs(s.execute(select(Record.batch_id, func.count()).group_by(Record.batch_id)))
        assert left == {held: 2, retried: 2}
        kept = pairs(s.execute(select(Event.batch_id, func.count()).group_by(Event.batch_id)))
        assert kept == {held: events[held], retried: events[retried]}
    assert set(where(rt, "records").values()) == {"records_default"}
    assert prune.prune(rt.sessions, cutoff) == prune.PruneReport(cutoff)


_OLD_BATCH = (
    "INSERT INTO batches (id, livevox_account, target, size, status) "
    "VALUES (1, 'default', 'service:1', 3, 'appended')"
)
_OLD_RECORD = (
    "INSERT INTO records (id, batch_id, position, livevox_account, target, phone1, enqueued_at) "
    "VALUES (:id, 1, :p, 'default', 'service:1', :ph, now())"
)
_OLD_EVENTS = (
    "INSERT INTO events (batch_id, to_status, actor, at) "
    "VALUES (1, 'ready', 'test', :old), (1, 'appended', 'test', :now)"
)


def _fill_0009(engine: Engine, ids: dict[str, str], old: datetime, now: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(text(_OLD_BATCH))
        for position, rid in enumerate(ids.values()):
            conn.execute(text(_OLD_RECORD), {"id": rid, "p": position, "ph": phone(position)})
        conn.execute(text(_OLD_EVENTS), {"old": old, "now": now})


def _assert_plain_again(engine: Engine) -> None:
    with engine.connect() as conn:
        assert not partitions.is_partitioned(conn)
        assert conn.scalar(text("SELECT count(*) FROM records")) == 3
        assert conn.scalar(text("SELECT count(*) FROM events")) == 2
        assert conn.scalar(text("SELECT nextval('events_id_seq')")) == 3


def test_upgrading_to_partitions_keeps_every_row_and_the_downgrade_too(
    fresh_database_url: str,  # noqa: F811
) -> None:
    # Given a database at 0009 with records of today, of 30 days ago and of another id layout,
    # and events of today and of 30 days ago, When it is migrated to head, Then every row is
    # kept, each in its day (the odd id in DEFAULT), and the days ahead exist; the downgrade to
    # 0009 keeps every row in plain tables again.
    migrate(fresh_database_url, "0009")
    now = utcnow()
    old = now - timedelta(days=30)
    ids = {"today": v7_at(now), "old": v7_at(old), "odd": str(uuid.uuid4())}
    engine = create_engine(fresh_database_url, poolclass=NullPool)
    try:
        _fill_0009(engine, ids, old, now)
        migrate(fresh_database_url)
        with engine.connect() as conn:
            placed = pairs(
                conn.execute(text("SELECT id::text, tableoid::regclass::text FROM records"))
            )
            assert placed == {
                ids["today"]: partitions.RECORDS.name(now.date()),
                ids["old"]: partitions.RECORDS.name(old.date()),
                ids["odd"]: "records_default",
            }
            days = pairs(
                conn.execute(text("SELECT to_status, tableoid::regclass::text FROM events"))
            )
            assert days == {
                "ready": partitions.EVENTS.name(old.date()),
                "appended": partitions.EVENTS.name(now.date()),
            }
            ahead = partitions.today() + timedelta(days=partitions.AHEAD_DAYS)
            assert ahead in partitions.existing(conn, partitions.RECORDS)
            assert conn.scalar(text("SELECT max(id) FROM events")) == 2
        command.downgrade(alembic_config(fresh_database_url), "0009")
        _assert_plain_again(engine)
    finally:
        engine.dispose()


def test_prune_waits_for_no_long_query_and_says_when_a_day_stayed_busy(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an old day's finished batch and a query holding that day's partition, When prune
    # runs (a 50 ms lock timeout), Then it gives up after its tries, saying which day and that
    # nothing of it was deleted, and everything is still there; once the query ends, it prunes.
    monkeypatch.setattr(partitions, "LOCK_TIMEOUT", "50ms")
    monkeypatch.setattr(prune, "BUSY_PAUSE_S", 0.01)
    old = utcnow() - timedelta(days=40)
    with rt.sessions() as s, s.begin():
        partitions.ensure(s.connection(), [old.date()])
    batch = make_batch(rt, BatchStatus.APPENDED, leads_at(old, 2, 0))
    age(rt, batch, old)
    cutoff = prune.cutoff_for(30)
    with rt.sessions() as reader, reader.begin():
        reader.execute(
            text(f"LOCK TABLE {partitions.RECORDS.name(old.date())} IN ACCESS SHARE MODE")
        )
        with pytest.raises(prune.PartitionBusy, match=old.date().isoformat()):
            prune.prune(rt.sessions, cutoff)
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Record)) == 2
    assert prune.prune(rt.sessions, cutoff) == prune.PruneReport(cutoff, 1, 2, 3, partitions=2)
