"""The dry run (issue "Survive the real LiveVox", point 5): everything against LiveVox except the
Append call. Real Redis, PostgreSQL and the simulator over HTTP."""

from __future__ import annotations

from appendq.db.models import BatchStatus
from appendq.drain.tick import drain_once
from appendq.ops import retry, status
from appendq.queue.item import QueuedRecord, new_record_id
from appendq.runtime import Runtime
from tests.conftest import Sim, batches


def leads(n: int) -> list[QueuedRecord]:
    return [
        QueuedRecord(new_record_id(), 1.7e9 + i, {"phone1": f"212{6000000 + i:07d}"})
        for i in range(n)
    ]


def test_a_dry_run_resolves_and_audits_but_never_appends(sim: Sim, rt: Runtime) -> None:
    # Given a dry-run worker and 12 queued records, When it ticks, Then it logs in, resolves
    # today's campaign, audits one batch as dry_run with that campaign, makes no Append call,
    # and `status` says a dry run is in force; an operator's retry then sends it for real.
    dry = Runtime.build(rt.settings.model_copy(update={"dry_run": True}))
    try:
        dry.queue.push("service:1001", leads(12))
        report = drain_once(dry.drainer())
        assert (report.outcome, report.records, report.campaign_id) == ("dry_run", 12, 5001)
        assert sim.calls("append") == [] and len(sim.calls("login")) == 1
        assert len(sim.calls("search")) >= 1
        (batch,) = batches(dry)
        assert batch.status == BatchStatus.DRY_RUN and batch.campaign_id == 5001
        assert status.collect(dry)["accounts"][0]["dry_run"] is not None
        assert drain_once(dry.drainer()).outcome == "idle"
    finally:
        dry.close()
    with rt.sessions() as session, session.begin():
        moved = retry.retry(
            session,
            retry.RetryFilter(statuses=(BatchStatus.DRY_RUN,)),
            reason="going live",
            actor="operator:test",
        ).moved
    assert len(moved) == 1
    assert drain_once(rt.drainer()).outcome == "appended"
    assert len(sim.records(5001)) == 12
