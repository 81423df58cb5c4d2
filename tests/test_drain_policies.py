"""The drain's small pure rules, table-driven: which LiveVox refusals are about one target (set
it aside, the others go on) and which are about the whole account."""

from __future__ import annotations

import pytest

from appendq.drain.bulkhead import about_this_target
from appendq.errors import (
    AnswerLost,
    CampaignUnavailable,
    Configuration,
    LiveVoxError,
    LoginDenied,
    Rejected,
    TargetRefused,
    Transient,
)


@pytest.mark.parametrize(
    ("error", "about_the_target"),
    [
        (TargetRefused("service unknown", status=404), True),
        (CampaignUnavailable("campaign gone", status=404), True),
        (CampaignUnavailable("campaign is stopped", status=409), True),
        (Configuration("forbidden", status=403), True),
        (Configuration("not found", status=400), True),
        (Configuration("last 4xx", status=499), True),
        (Configuration("session", status=401), False),
        (Configuration("server says no", status=500), False),
        (Configuration("bad URL", status=None), False),
        (LoginDenied("bad password", status=403), False),
        (Transient("busy", status=503), False),
        (AnswerLost("lost"), False),
        (Rejected("bad record", status=400), False),
    ],
)
def test_which_refusals_are_about_one_target(error: LiveVoxError, about_the_target: bool) -> None:
    assert about_this_target(error) is about_the_target
