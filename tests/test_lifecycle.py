"""The batch lifecycle is one table (``appendq.batches.lifecycle.TRANSITIONS``): the code refuses a
move it does not hold, PostgreSQL refuses it too, the migration's copy and ARCHITECTURE.md's
diagram are that same table, and the old hidden state migrates to its own status."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from alembic import command
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool

from appendq.batches import lifecycle
from appendq.batches.lifecycle import TRANSITIONS, IllegalTransition, may_move
from appendq.batches.store import BatchStore, Change
from appendq.db.engine import alembic_config, migrate
from appendq.db.models import (
    FINISHED_STATUSES,
    OPEN_STATUSES,
    RETRYABLE_STATUSES,
    Batch,
    BatchStatus,
)
from appendq.queue.item import QueuedRecord, new_record_id
from appendq.runtime import Runtime
from tests.support.batches import move, persist_claim
from tests.test_infra import fresh_database_url  # noqa: F401  (a fixture)

ROOT = Path(__file__).resolve().parents[1]
S = BatchStatus


def _migration() -> ModuleType:
    path = next((ROOT / "migrations" / "versions").glob("0005_*.py"))
    spec = importlib.util.spec_from_file_location("migration_0005", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _batch(rt: Runtime) -> int:
    rt.queue.push("service:1001", [QueuedRecord(new_record_id(), 1.7e9, {"phone1": "2122000000"})])
    claim = rt.queue.claim("service:1001", 10)
    with rt.sessions() as session:
        view = persist_claim(session, claim)
    assert view is not None
    return view.id


def test_the_code_refuses_a_move_the_table_does_not_hold(rt: Runtime) -> None:
    # Given a ready batch, When a writer tries ready -> rejected (never a transition), Then
    # BatchStore raises IllegalTransition and the batch stays ready; a legal move still works.
    batch_id = _batch(rt)
    with rt.sessions() as session, session.begin():
        store = BatchStore(session, "test")
        with pytest.raises(IllegalTransition, match="ready -> rejected"):
            store.move(batch_id, S.REJECTED, reason="x", version=None, expect=[S.READY])
    with rt.sessions() as session, session.begin():
        assert session.get(Batch, batch_id).status == S.READY  # type: ignore[union-attr]
        assert move(session, batch_id, S.SENDING, campaign_id=5001) is not None


def test_a_change_names_only_real_columns() -> None:
    # Given the columns a move may set, When a writer names one that is not there, Then it fails
    # at once (a misspelt column can never pass silently).
    with pytest.raises(TypeError):
        Change(error_knd="x")  # type: ignore[call-arg]
    assert {f for f in Change.__dataclass_fields__} <= set(Batch.__table__.columns.keys())


def test_postgresql_refuses_an_illegal_move_and_an_unknown_status(rt: Runtime) -> None:
    # Given a ready batch, When raw SQL moves it ready -> failed, or to a status nobody knows,
    # Then PostgreSQL refuses both (trigger, check constraint); ready -> sending passes.
    batch_id = _batch(rt)
    illegal = "UPDATE batches SET status = 'failed' WHERE id = :i"
    unknown = (
        "INSERT INTO batches (livevox_account, target, size, status) "
        "VALUES ('default', 'service:1', 1, 'lost')"
    )
    for statement in (illegal, unknown):
        with rt.sessions() as session, pytest.raises(IntegrityError):
            session.execute(text(statement), {"i": batch_id})
            session.commit()
    with rt.sessions() as session, session.begin():
        session.execute(
            text("UPDATE batches SET status = 'sending' WHERE id = :i"), {"i": batch_id}
        )


def test_the_migrations_copy_is_the_table() -> None:
    # Given migration 0005's frozen copy of the lifecycle, Then it holds exactly today's statuses
    # and today's moves between two statuses (a change to the table needs a migration).
    migration = _migration()
    assert set(migration.STATUSES) == {str(s) for s in BatchStatus}
    assert sorted(migration.MOVES) == lifecycle.database_pairs()


def test_architecture_shows_the_diagram_of_the_table() -> None:
    # Given ARCHITECTURE.md, Then its state diagram is the one drawn from the table today.
    assert lifecycle.diagram() in (ROOT / "ARCHITECTURE.md").read_text()


def test_the_table_has_no_dead_end() -> None:
    # Every status is reached from a new batch; every status that is not finished has a way out;
    # every open status can be retried or moves on by itself; operator retries go to ready only.
    reached, frontier = {S.READY}, [S.READY]
    while frontier:
        here = frontier.pop()
        for source, to in TRANSITIONS:
            if source == here and to not in reached:
                reached.add(to)
                frontier.append(to)
    assert reached == set(BatchStatus)
    for status in BatchStatus:
        if status not in FINISHED_STATUSES:
            assert any(s == status and t != status for s, t in TRANSITIONS), status
    assert all(may_move(s, S.READY) for s in RETRYABLE_STATUSES)
    assert S.OPERATOR_HOLD not in OPEN_STATUSES  # it no longer blocks its target


def test_the_hidden_state_migrates_to_operator_hold(fresh_database_url: str) -> None:  # noqa: F811
    # Given a database at revision 0004 with a batch held + error_kind "operator" (the old hidden
    # state) and a plainly held one, When it is migrated to head, Then the first is operator_hold
    # and the second still held; a downgrade turns it back.
    migrate(fresh_database_url, "0004")
    engine = create_engine(fresh_database_url, poolclass=NullPool)
    insert = (
        "INSERT INTO batches (target, size, status, error_kind) VALUES "
        "('service:1', 1, 'held', 'operator'), ('service:1', 1, 'held', 'held')"
    )
    read = "SELECT status FROM batches ORDER BY id"
    try:
        with engine.begin() as conn:
            conn.execute(text(insert))
        migrate(fresh_database_url)
        with engine.connect() as conn:
            assert list(conn.scalars(text(read))) == ["operator_hold", "held"]
        command.downgrade(alembic_config(fresh_database_url), "0004")
        with engine.connect() as conn:
            assert list(conn.scalars(text(read))) == ["held", "held"]
    finally:
        engine.dispose()
