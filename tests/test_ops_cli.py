"""``appendq retry``, ``audit`` and ``prune`` as operators run them: the real commands (click's
runner, or a subprocess at a real pseudo-terminal), a real PostgreSQL database and Redis."""

from __future__ import annotations

import getpass
import json
import os
import pty
import select
import subprocess
import time
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, update
from sqlalchemy import select as sql_select

from appendq.cli import main
from appendq.db.models import Batch, BatchStatus, Event, Record
from appendq.drain.tick import drain_once
from appendq.runtime import Runtime
from appendq.settings import Settings
from tests.conftest import Sim, phone, settings_env
from tests.support.procs import APPENDQ, ROOT, env_for
from tests.test_audit import CAMPAIGN, T0, age, batch_status, leads, make_batch

Env = dict[str, str]


# retry and prune configure logging onto the runner's stderr
pytestmark = pytest.mark.usefixtures("keep_root_logging")


@pytest.fixture
def env(settings: Settings) -> Env:
    return settings_env(settings, APPENDQ_LOG_LEVEL="WARNING")


def run(env: Env, *args: str, answer: str | None = None) -> Result:
    return CliRunner(env=env).invoke(main, list(args), input=answer)


def run_at_terminal(env: Env, args: list[str], answer: bytes) -> tuple[int, str]:
    """Run ``appendq *args`` on a pseudo-terminal; type ``answer`` at the [y/N] prompt."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*APPENDQ, *args], stdin=slave, stdout=slave, stderr=slave, env=env_for(env), cwd=ROOT
    )
    os.close(slave)
    out, answered, deadline = b"", False, time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 0.5)[0]:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the command exited and closed the terminal
                break
            if not chunk:
                break
            out += chunk
            if not answered and b"[y/N]" in out:
                os.write(master, answer)
                answered = True
        return proc.wait(timeout=30), out.decode(errors="replace")
    finally:
        proc.kill()
        os.close(master)


def events_of(rt: Runtime, batch_id: int) -> list[Event]:
    with rt.sessions() as session:
        return list(
            session.scalars(sql_select(Event).where(Event.batch_id == batch_id).order_by(Event.id))
        )


def test_retry_without_yes_and_no_terminal_previews_and_changes_nothing(
    rt: Runtime, env: Env
) -> None:
    # Given a failed batch, When `retry --status failed` runs without --yes and without a terminal,
    # Then it prints the preview, refuses with a message, exits non-zero and changes nothing.
    batch = make_batch(rt, BatchStatus.FAILED, leads(3))
    before = len(events_of(rt, batch))
    result = run(env, "retry", "--status", "failed", "--reason", "fixed")
    assert result.exit_code == 1, result.output
    assert f"{batch:>8}  default    service:1001" in result.stdout
    assert "test says failed" in result.stdout
    assert "no terminal" in result.stderr and "nothing changed" in result.stderr
    assert batch_status(rt, batch) == BatchStatus.FAILED
    assert len(events_of(rt, batch)) == before


@pytest.mark.parametrize(("answer", "moved"), [(b"n\n", False), (b"y\n", True)])
def test_retry_at_a_terminal_goes_ahead_only_on_yes(
    rt: Runtime, env: Env, answer: bytes, moved: bool
) -> None:
    # Given a held batch, When an operator at a terminal answers the confirmation, Then "n" leaves
    # it held with no new event (exit 1), and "y" moves it to ready (exit 0).
    batch = make_batch(rt, BatchStatus.HELD, leads(2))
    code, out = run_at_terminal(env, ["retry", "--batch", str(batch), "--reason", "go"], answer)
    assert "Send these 1 batches (2 records) again? [y/N]" in out
    assert (code, batch_status(rt, batch)) == (
        (0, BatchStatus.READY) if moved else (1, BatchStatus.HELD)
    ), out
    assert ("not confirmed: nothing changed" in out) is not moved
    assert len(events_of(rt, batch)) == (3 if moved else 2)


def test_retry_yes_moves_only_matching_batches_and_records_who_and_why(
    rt: Runtime, env: Env
) -> None:
    # Given failed batches of two services, a held and an appended batch of service 1001, When
    # `retry --status failed --service 1001 --yes` runs, Then only the failed 1001 batch moves to
    # ready, and its event names the operator's login and the reason.
    target = make_batch(rt, BatchStatus.FAILED, leads(2))
    other_service = make_batch(rt, BatchStatus.FAILED, leads(2, 10), target="service:1002")
    held = make_batch(rt, BatchStatus.HELD, leads(2, 20))
    done = make_batch(rt, BatchStatus.APPENDED, leads(2, 30))
    result = run(
        env,
        "retry",
        "--status",
        "failed",
        "--service",
        "1001",
        "--reason",
        "LiveVox fixed",
        "--yes",
    )
    assert result.exit_code == 0, result.output
    assert f"moved 1 batches (2 records) back to ready, as operator:{getpass.getuser()}" in (
        result.stdout
    )
    assert batch_status(rt, target) == BatchStatus.READY
    assert [batch_status(rt, b) for b in (other_service, held, done)] == [
        BatchStatus.FAILED,
        BatchStatus.HELD,
        BatchStatus.APPENDED,
    ]
    last = events_of(rt, target)[-1]
    assert (last.from_status, last.to_status) == ("failed", "ready")
    assert (last.actor, last.reason) == (f"operator:{getpass.getuser()}", "LiveVox fixed")
    assert last.detail == {
        "operator_retry": True, "from": "failed", "records": 2, "attempts": 1, "version": 2,
    }  # fmt: skip


def test_retry_without_any_filter_is_refused(rt: Runtime, env: Env) -> None:
    # Given a failed batch, When `retry --reason x --yes` runs with no filter (or with both
    # --service and --campaign), Then it is a usage error and nothing moves.
    batch = make_batch(rt, BatchStatus.FAILED, leads(1))
    result = run(env, "retry", "--reason", "oops", "--yes")
    assert result.exit_code == 2 and "never retries everything" in result.stderr
    both = run(env, "retry", "--service", "1", "--campaign", "2", "--reason", "x", "--yes")
    assert both.exit_code == 2 and "not both" in both.stderr
    assert batch_status(rt, batch) == BatchStatus.FAILED


def test_retry_of_in_doubt_warns_that_livevox_may_get_duplicates(rt: Runtime, env: Env) -> None:
    # Given an in_doubt and a failed batch, When `retry --json --yes` takes both, Then a loud
    # warning names the in_doubt batch's risk (stderr), stdout is the JSON preview and what moved,
    # and the in_doubt batch's event says it may duplicate.
    doubtful = make_batch(rt, BatchStatus.IN_DOUBT, leads(3))
    failed = make_batch(rt, BatchStatus.FAILED, leads(2, 10))
    result = run(
        env, "retry", "--status", "in_doubt", "--status", "failed", "--reason", "checked",
        "--actor", "operator:bea", "--yes", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "WARNING: 1 of these batches (3 records)" in result.stderr
    assert "DUPLICATE" in result.stderr
    data = json.loads(result.stdout)
    assert [(b["id"], b["status"], b["may_duplicate"]) for b in data["preview"]] == [
        (doubtful, "in_doubt", True),
        (failed, "failed", False),
    ]
    assert [b["id"] for b in data["moved"]] == [doubtful, failed]
    event = events_of(rt, doubtful)[-1]
    assert event.actor == "operator:bea" and "may receive them twice" in (event.reason or "")


def test_retry_by_campaign_and_time_range(rt: Runtime, env: Env) -> None:
    # Given failed batches for campaigns 5001 (one created 3 days ago, one now) and 6001, When
    # `retry --campaign 5001 --since <2 days ago>` runs, Then only the recent 5001 batch moves.
    old = make_batch(rt, BatchStatus.FAILED, leads(1))
    new = make_batch(rt, BatchStatus.FAILED, leads(1, 10))
    other = make_batch(rt, BatchStatus.FAILED, leads(1, 20), campaign=6001)
    age(rt, old, 3)
    two_days_ago = datetime.now(rt.settings.tz) - timedelta(days=2)
    result = run(
        env, "retry", "--campaign", str(CAMPAIGN), "--since", two_days_ago.isoformat(),
        "--reason", "campaign fixed", "--yes",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [batch_status(rt, b) for b in (old, new, other)] == [
        BatchStatus.FAILED,
        BatchStatus.READY,
        BatchStatus.FAILED,
    ]


def test_retry_of_a_batch_that_cannot_be_retried_says_why(rt: Runtime, env: Env) -> None:
    # Given an appended batch, When `retry --batch ID --yes` names it (or a batch that does not
    # exist), Then it exits 1 saying the batch is appended (or unknown) and nothing changes.
    done = make_batch(rt, BatchStatus.APPENDED, leads(1))
    result = run(env, "retry", "--batch", str(done), "--reason", "x", "--yes")
    assert result.exit_code == 1 and f"batch {done} is appended" in result.stderr
    missing = run(env, "retry", "--batch", "999999", "--reason", "x", "--yes")
    assert missing.exit_code == 1 and "no batch 999999" in missing.stderr
    assert len(events_of(rt, done)) == 3


def test_audit_table_shows_the_timeline_with_the_operator_retry(
    sim: Sim, rt: Runtime, env: Env
) -> None:
    # Given a failed batch retried by an operator and then appended, When the auditor runs
    # `audit --phone <full number>`, Then the table shows the masked phone only, the status and
    # the timeline queued, batched, sent, failed, retried (who, why), sent, appended.
    batch = make_batch(rt, BatchStatus.FAILED, leads(2))
    moved = run(env, "retry", "--batch", str(batch), "--reason", "LiveVox was down", "--yes")
    assert moved.exit_code == 0, moved.output
    assert drain_once(rt.drainer()).outcome == "appended"
    result = run(env, "audit", "--phone", phone(1))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert phone(1) not in out and "phone ******0001  account A1" in out
    assert f"APPENDED  batch {batch} #1  campaign {CAMPAIGN}" in out
    steps = [line.split()[3] for line in out.splitlines() if line.startswith("    ")]
    assert steps == ["queued", "batched", "sent", "failed", "retried", "sent", "appended"]
    retried = next(line for line in out.splitlines() if " retried " in line)
    assert f"operator:{getpass.getuser()}" in retried and "LiveVox was down" in retried
    assert out.rstrip().endswith("1 record")


def test_audit_filters_combine_and_read_times_in_the_client_zone(rt: Runtime, env: Env) -> None:
    # Given records enqueued at 09:00, 10:00 and 11:00 UTC (04:00, 05:00, 06:00 in New York),
    # When the auditor asks for service 1002 since 04:30 local and status failed, Then only the
    # failed 1002 record enqueued after then comes back.
    make_batch(rt, BatchStatus.FAILED, leads(1, 0, T0), target="service:1002")
    wanted = leads(1, 10, T0 + timedelta(hours=1))
    make_batch(rt, BatchStatus.FAILED, wanted, target="service:1002")
    make_batch(rt, BatchStatus.FAILED, leads(1, 20, T0 + timedelta(hours=2)))
    result = run(
        env, "audit", "--service", "1002", "--status", "failed", "--since", "2026-11-02T04:30",
        "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [r["record_id"] for r in json.loads(result.stdout)["records"]] == [wanted[0].id]


def test_audit_json_has_full_detail(rt: Runtime, env: Env) -> None:
    # Given a held batch, When the auditor runs `audit --lead-account A1 --json`, Then the output
    # has the records with the batch's detail, its LiveVox account and a timeline of ISO-timed
    # entries, each batch event's reason and detail once under "events".
    batch = make_batch(rt, BatchStatus.HELD, leads(2))
    result = run(env, "audit", "--lead-account", "A1", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    (rec,) = doc["records"]
    shown = ("status", "batch_id", "batch_status", "phone1", "reason", "livevox_account")
    assert {k: rec[k] for k in shown} == {
        "livevox_account": "default",
        "status": "held",
        "batch_id": batch,
        "batch_status": "held",
        "phone1": "******0001",
        "reason": "test says held",
    }
    assert set(rec) >= {"record_id", "target", "account", "enqueued_at", "attempts", "timeline"}
    assert [t["step"] for t in rec["timeline"]] == ["queued", "batched", "held"]
    assert set(rec["timeline"][1]) == {
        "at", "status", "actor", "step", "scope", "from_status", "batch_id", "event_id",
    }  # fmt: skip
    assert set(doc["events"]) == {str(t["event_id"]) for t in rec["timeline"][1:]}
    assert set(doc["events"][str(rec["timeline"][1]["event_id"])]) == {"reason", "detail"}
    assert rec["timeline"][0]["at"].startswith("2026-11-02T09:00:01")


def test_audit_needs_a_filter(env: Env) -> None:
    # Given any database, When `audit` runs without a filter or with a bad record id, Then it is a
    # usage error naming the filters (or the bad id).
    result = run(env, "audit")
    assert result.exit_code == 2 and "give at least one filter" in result.stderr
    bad = run(env, "audit", "--record", "123")
    assert bad.exit_code == 2 and "not a record id" in bad.stderr


def test_prune_deletes_old_finished_batches_with_records_and_events(rt: Runtime, env: Env) -> None:
    # Given an old appended batch, an old held batch and a recent failed one, When `prune
    # --older-than-days 30` runs without --yes and no terminal, Then nothing goes; with --yes,
    # Then only the old appended batch goes, with its records and events, and counts are printed.
    old_done = make_batch(rt, BatchStatus.APPENDED, leads(3))
    old_open = make_batch(rt, BatchStatus.HELD, leads(2, 10))
    recent = make_batch(rt, BatchStatus.FAILED, leads(2, 20))
    age(rt, old_done, 31)
    age(rt, old_open, 31)
    refused = run(env, "prune", "--older-than-days", "30")
    assert refused.exit_code == 1 and "1 finished batches (3 records)" in refused.stdout
    assert batch_status(rt, old_done) == BatchStatus.APPENDED
    result = run(env, "prune", "--older-than-days", "30", "--yes")
    assert result.exit_code == 0, result.output
    assert "deleted 1 batches, 3 records, 3 events" in result.stdout
    with rt.sessions() as session:
        assert set(session.scalars(sql_select(Batch.id))) == {old_open, recent}
        assert session.scalar(sql_select(func.count()).select_from(Record)) == 4
        assert (
            session.scalar(
                sql_select(func.count()).select_from(Event).where(Event.batch_id == old_done)
            )
            == 0
        )
    assert "retention is off" in run(env, "prune", "--older-than-days", "0").stdout


def test_prune_default_comes_from_the_retention_setting(rt: Runtime, env: Env) -> None:
    # Given a finished batch last changed 10 days ago, When prune runs with
    # APPENDQ_RETENTION_DAYS=7 and --yes, Then it is deleted; with the default 90 it was kept.
    batch = make_batch(rt, BatchStatus.REJECTED, leads(1))
    with rt.sessions() as session, session.begin():
        session.execute(
            update(Batch)
            .where(Batch.id == batch)
            .values(updated_at=func.now() - timedelta(days=10))
        )
    kept = run(env, "prune", "--yes")
    assert kept.exit_code == 0 and "nothing to prune" in kept.stdout
    gone = run({**env, "APPENDQ_RETENTION_DAYS": "7"}, "prune", "--yes")
    assert gone.exit_code == 0 and "deleted 1 batches, 1 records" in gone.stdout
