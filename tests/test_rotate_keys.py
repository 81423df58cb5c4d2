"""Key rotation (``appendq rotate-keys``, issue #11): with records queued in Redis, in flight and
at rest in ready, retry_wait and in_doubt batches, nothing is lost and every re-send carries the
record as it was accepted. Real Redis, PostgreSQL and the simulator over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import SecretStr
from sqlalchemy import func, select, text

from appendq.batches import reads, rekey
from appendq.cli import main
from appendq.crypto import decode_key, key_id, new_key
from appendq.db.models import BatchStatus, Record
from appendq.queue.item import QueuedRecord, new_record_id
from appendq.runtime import Runtime
from appendq.settings import Settings
from tests.conftest import Sim, batches, settings_env
from tests.support.batches import move, persist_claim
from tests.support.drive import drain_until

CAMPAIGN = 5001
TARGET = "service:1001"
S = BatchStatus


def leads(n: int, start: int) -> list[QueuedRecord]:
    """Records with personal fields, unique accounts (to match them at LiveVox)."""
    return [
        QueuedRecord(
            new_record_id(),
            1.7e9 + start + i,
            {
                "phone1": f"212{5550000 + start + i:07d}",
                "account": f"K{start + i}",
                "firstName": f"Name{start + i}",
                "ssn": f"{900000000 + start + i}",
                "totalAmount": f"{start + i}.25",
            },
        )
        for i in range(n)
    ]


def keyed(settings: Settings, *keys: str) -> Settings:
    return settings.model_copy(update={"data_keys": [SecretStr(k) for k in keys]})


@pytest.fixture
def old_key() -> str:
    return new_key()


@pytest.fixture
def rt_old(settings: Settings, old_key: str) -> Iterator[Runtime]:
    rt = Runtime.build(keyed(settings, old_key))
    yield rt
    rt.close()


def at_rest(rt: Runtime, records: list[QueuedRecord], path: list[BatchStatus]) -> int:
    """A batch of ``records`` persisted as the drain does, then moved along ``path`` (due at
    once: next_attempt_at now)."""
    rt.queue.push(TARGET, records)
    claim = rt.queue.claim(TARGET, 100)
    with rt.sessions() as session:
        batch = persist_claim(session, claim, actor="worker@test")
    rt.queue.ack(claim)
    assert batch is not None
    with rt.sessions() as session, session.begin():
        for step in path:
            columns: dict[str, Any] = {"campaign_id": CAMPAIGN, "attempts": 1}
            if step != S.SENDING:
                columns["next_attempt_at"] = func.now()
            move(session, batch.id, step, reason=f"test: {step}", **columns)
    return batch.id


def by_key(rt: Runtime) -> dict[str, int]:
    with rt.sessions() as session:
        return rekey.census(session).by_key


def test_rotation_with_records_queued_in_flight_and_at_rest_loses_nothing(
    sim: Sim, rt_old: Runtime, settings: Settings, old_key: str
) -> None:
    # Given, under the old key, an appended calibration batch, batches at rest in ready,
    # retry_wait and in_doubt (nothing of it at LiveVox), records claimed in flight and records
    # still queued, When a new key is put first and every payload re-encrypted, and the old key
    # is then removed, Then the drain sends every record once, each as it was accepted.
    sim.reset(rate_window_s=rt_old.settings.rate_window_s)
    calibration = leads(2, 0)
    rt_old.queue.push(TARGET, calibration)
    drain_until(rt_old, [r.id for r in calibration], {"appended"}, 10, "the calibration")
    resting = [leads(3, 10), leads(3, 20), leads(3, 30)]
    at_rest(rt_old, resting[0], [])
    at_rest(rt_old, resting[1], [S.SENDING, S.RETRY_WAIT])
    at_rest(rt_old, resting[2], [S.SENDING, S.IN_DOUBT])
    in_flight, still_queued = leads(3, 40), leads(3, 50)
    rt_old.queue.push(TARGET, in_flight)
    rt_old.queue.claim(TARGET, 100)  # a drainer died holding them: recovery persists them
    rt_old.queue.push(TARGET, still_queued)
    new = new_key()
    rotating = Runtime.build(keyed(settings, new, old_key))
    try:
        old_id, new_id = key_id(decode_key(old_key)), rotating.cipher.current
        assert by_key(rotating) == {old_id: 11}
        report = rekey.rotate(rotating.sessions, rotating.cipher, chunk=4)
        assert (report.rewritten, report.left.by_key) == (11, {new_id: 11})
        assert report.left.retired(rotating.cipher) == [old_id]
    finally:
        rotating.close()
    everything = [*calibration, *(r for b in resting for r in b), *in_flight, *still_queued]
    rt_new = Runtime.build(keyed(settings, new))
    try:
        drain_until(rt_new, [r.id for r in everything], {"appended"}, 40, "every record sent")
        assert by_key(rt_new) == {new_id: 17}
        assert {b.status for b in batches(rt_new)} == {S.APPENDED}
    finally:
        rt_new.close()
    sent_as_accepted(sim, everything)


def sent_as_accepted(sim: Sim, records: list[QueuedRecord]) -> None:
    """LiveVox holds each record once, every field as it was accepted."""
    got = {r["account"]: r for r in sim.records(CAMPAIGN)}
    assert len(sim.records(CAMPAIGN)) == len(records) == len(got)
    for rec in records:
        assert {k: got[rec.payload["account"]][k] for k in rec.payload} == rec.payload


def test_rows_stored_in_clear_before_0007_are_sent_then_encrypted(
    sim: Sim, rt_old: Runtime
) -> None:
    # Given a batch whose payloads were written in clear (before migration 0007), When it is
    # read to send, Then the clear payloads are used; When keys are rotated, Then they are
    # encrypted and the clear copy is gone.
    records = leads(2, 60)
    batch_id = at_rest(rt_old, records, [])
    with rt_old.sessions() as session, session.begin():
        for rec in records:
            session.execute(
                text(
                    "UPDATE records SET payload = CAST(:p AS jsonb), payload_enc = NULL, "
                    "payload_key = NULL WHERE id = :id"
                ),
                {"p": json.dumps(rec.payload), "id": rec.id},
            )
    with rt_old.sessions() as session:
        assert reads.batch_payloads(session, batch_id) == [r.payload for r in records]
    assert by_key(rt_old) == {rekey.CLEAR: 2}
    assert rekey.rotate(rt_old.sessions, rt_old.cipher).rewritten == 2
    assert by_key(rt_old) == {rt_old.cipher.current: 2}
    with rt_old.sessions() as session:
        assert session.scalar(select(func.count()).where(Record.legacy_payload.is_not(None))) == 0
        assert reads.batch_payloads(session, batch_id) == [r.payload for r in records]


@pytest.mark.usefixtures("keep_root_logging")
def test_the_command_rotates_and_refuses_keys_it_does_not_hold(
    rt_old: Runtime, settings: Settings, old_key: str
) -> None:
    # Given payloads under the old key, When `appendq rotate-keys` runs with only a new key,
    # Then it refuses and changes nothing; with the new key first and the old one after, it
    # re-encrypts them all and says the old key may go; run again, there is nothing to do.
    at_rest(rt_old, leads(3, 70), [])
    new = new_key()
    env = {**settings_env(settings), "APPENDQ_STATE_DIR": settings.state_dir}
    runner = CliRunner()
    refused = runner.invoke(main, ["rotate-keys"], env={**env, "APPENDQ_DATA_KEYS": new})
    assert refused.exit_code == 1 and "put those keys back" in refused.output
    old_id, new_id = key_id(decode_key(old_key)), key_id(decode_key(new))
    assert by_key(rt_old) == {old_id: 3}
    both = {**env, "APPENDQ_DATA_KEYS": f"{new},{old_key}"}
    done = runner.invoke(main, ["rotate-keys", "--chunk", "2"], env=both)
    assert done.exit_code == 0, done.output
    assert "3 payloads to re-encrypt" in done.output and "3 of 3 re-encrypted" in done.output
    assert f"keys {old_id} may now be removed" in done.output
    assert by_key(rt_old) == {new_id: 3}
    again = runner.invoke(main, ["rotate-keys"], env=both)
    assert again.exit_code == 0 and "re-encrypted 0 payloads" in again.output
    printed = runner.invoke(main, ["rotate-keys", "--new-key"]).output.strip()
    assert len(decode_key(printed)) == 32
    assert old_key not in done.output + refused.output and new not in done.output
