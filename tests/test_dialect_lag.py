"""A transaction list that lags more than the answered-5xx settle (a dialect variant of "quiet"):
what calibrated reconciliation proves, and what it does not.

"None present" is believed when the same read shows every record of the campaign's youngest batch
answered 204 (``appendq.drain.reconcile``). When that batch is *older* than the in-doubt one,
seeing it proves only that the list's lag is shorter than its age when first seen, not shorter than
the in-doubt batch's age: so "none present" waits until the in-doubt batch's answer is at least
that old (the lag bound), then reads again. The lag of the real LiveVox is unconfirmed (issue 9,
"Unconfirmed corners"), so the test below states what a fail-safe client must do. (Found by the
dialect matrix; it failed before the lag bound: the batch that landed was sent again.)"""

from __future__ import annotations

import time
from typing import Any

from appendq.runtime import Runtime
from appendq.settings import Settings
from tests.conftest import Sim
from tests.support.drive import drain_until
from tests.support.invariants import check, enqueue, make_leads

CAMPAIGN = 5001
SERVICE = "service:1001"
LAG_S = 8.0  # longer than the default 5 s settle


def test_a_list_lagging_past_the_settle_never_resends_what_landed(
    sim: Sim, settings: Settings
) -> None:
    # Given a LiveVox whose list shows appended records 8 s late (quiet, lag 8 s > the default 5 s
    # settle) and a campaign whose first batch (204) is old enough to show, When the next batch is
    # answered 500 although it landed, Then it is never sent again: appended once the list shows
    # it, or held for an operator; LiveVox holds each record once.
    sim.reset(rate_window_s=3.0, dialect={"preset": "quiet", "tx_delay_s": LAG_S})
    overrides: dict[str, Any] = {"livevox_connect_timeout_s": 1.0, "livevox_read_timeout_s": 1.0}
    rt = Runtime.build(settings.model_copy(update=overrides))
    try:
        calibration = enqueue(rt.settings, make_leads(2, start=100), SERVICE)
        drain_until(rt, calibration, {"appended"}, 10, "the calibration batch")
        time.sleep(LAG_S - rt.settings.answered_settle_s + 1.0)  # it shows by the reconciliation
        sim.fault("append", {"status": 500, "apply": True})
        ids = enqueue(rt.settings, make_leads(3), SERVICE)
        drain_until(rt, ids, {"appended", "held"}, 25, "the batch in doubt")
        summary = check(
            database_url=rt.settings.database_url,
            sim_url=sim.url,
            accepted=calibration + ids,
            prefix=rt.settings.redis_prefix,
            expect={"appended", "held"},
        )
    finally:
        rt.close()
    assert [c["status"] for c in summary.append_calls] == [204, 500]
