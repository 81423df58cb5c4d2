"""Which of today's campaigns a service's records go to (``choose``), table-driven: outbound only,
a status word of the setting (compared upper-case, earlier words preferred), none refused lately,
then the most recently uploaded, then the highest id. A pure function over ``Campaign`` values."""

from __future__ import annotations

import pytest

from appendq.livevox.campaigns import APPENDABLE_STATES, OUTBOUND, choose
from appendq.livevox.client import Campaign


def c(
    ident: int, status: str = "PLAYING", uploaded: int | None = 0, type_id: int = OUTBOUND
) -> Campaign:
    return Campaign(ident, f"c{ident}", type_id, 1001, status, uploaded)


@pytest.mark.parametrize(
    ("found", "refused", "states", "chosen"),
    [
        ([], set(), APPENDABLE_STATES, None),
        ([c(1)], set(), APPENDABLE_STATES, 1),
        ([c(1, "playing")], set(), APPENDABLE_STATES, 1),  # status words in any case
        ([c(1)], set(), ["playing"], 1),  # the setting's words too
        ([c(1, "STOPPED")], set(), APPENDABLE_STATES, None),
        ([c(1, type_id=2)], set(), APPENDABLE_STATES, None),  # inbound
        ([c(1, type_id=0)], set(), APPENDABLE_STATES, None),
        ([c(1)], {1}, APPENDABLE_STATES, None),  # refused lately
        ([c(1), c(2, "PAUSED")], {1}, APPENDABLE_STATES, 2),
        ([c(1, "PAUSED"), c(2, "PLAYING")], set(), APPENDABLE_STATES, 2),  # earlier word first
        ([c(1, "PREBUILT"), c(2, "ACTIVE"), c(3, "READY")], set(), APPENDABLE_STATES, 3),
        ([c(1, "PLAYING"), c(2, "PAUSED")], set(), ["PAUSED", "PLAYING"], 2),
        ([c(1, uploaded=5), c(2, uploaded=9), c(3, uploaded=7)], set(), APPENDABLE_STATES, 2),
        ([c(1, uploaded=None), c(2, uploaded=1)], set(), APPENDABLE_STATES, 2),  # None is 0
        ([c(1, uploaded=None), c(2, uploaded=0)], set(), APPENDABLE_STATES, 2),  # then id
        ([c(3, uploaded=4), c(2, uploaded=4)], set(), APPENDABLE_STATES, 3),
        ([c(2, uploaded=4), c(3, uploaded=4)], set(), APPENDABLE_STATES, 3),
        ([c(1, "PAUSED", 9), c(2, "PLAYING", 1)], set(), APPENDABLE_STATES, 2),  # word before age
    ],
)
def test_choose_the_preferred_appendable_outbound_campaign(
    found: list[Campaign], refused: set[int], states: list[str], chosen: int | None
) -> None:
    # Given today's campaigns of a service, those refused lately and the appendable words /
    # When one is chosen / Then this one (or none).
    best = choose(found, refused, states)
    assert (best.id if best is not None else None) == chosen
