"""An in_doubt batch whose transaction list cannot be read: a refusal that nothing will change
by itself (403, or 404/409 about the campaign) holds it for an operator; a passing failure (503)
keeps it in doubt, to be read again later. Never re-sent on no evidence."""

from __future__ import annotations

import pytest

from appendq.db.models import BatchStatus
from appendq.drain.tick import drain_once
from appendq.runtime import Runtime
from tests.conftest import Sim, batches
from tests.test_recovery import leads, rt, settle_in_doubt  # noqa: F401  (rt: a fixture)


@pytest.mark.parametrize(
    ("status", "ends"),
    [
        (403, BatchStatus.OPERATOR_HOLD),
        (404, BatchStatus.OPERATOR_HOLD),
        (409, BatchStatus.OPERATOR_HOLD),
        (503, BatchStatus.IN_DOUBT),
    ],
)
def test_an_unreadable_list_holds_or_waits_never_resends(
    sim: Sim,
    rt: Runtime,  # noqa: F811
    status: int,
    ends: BatchStatus,
) -> None:
    # Given a batch whose Append answer was lost, When its campaign's transaction list is
    # answered ``status`` on every read, Then a refusal holds it for an operator with the reason
    # and a 503 leaves it in doubt; the Append is never made again.
    sim.fault("append", {"status": 500})
    rt.queue.push("service:1001", leads(2))
    assert drain_once(rt.drainer()).outcome == "in_doubt"
    sim.fault("transactions", {"status": status}, times=50)
    settle_in_doubt(rt, 2)
    (batch,) = batches(rt)
    assert batch.status == ends, batch.error_message
    if ends == BatchStatus.OPERATOR_HOLD:
        assert "cannot reconcile" in (batch.error_message or "")
    assert len(sim.calls("append")) == 1
