"""The fault scenarios whose outcome depends on how LiveVox answers its unconfirmed corners, under
every dialect preset of ``appendq.simulator.dialect`` (issue 9): lost answers and reconciliation
(phone key, list visibility and lag), LiveVox's rate-limit answer (its status), session expiry
(versioned paths or not), a campaign stopped then a Built one (refusal status, status words,
malformed search entries) and a poison record (numbering, unknown fields). Drained in-process like
``tests.test_faults`` (``tests.support.drive``) against real Redis, PostgreSQL and the simulator
over HTTP.

The invariants of ``tests.support.invariants`` hold in every preset: nothing lost, no record at
LiveVox twice, no good record rejected, no rate window over the limit. The outcome is the
dialect's: a lost answer is settled by the list where it can (``list_settles``), else held for an
operator and never sent again; every other scenario ends as under the default dialect. Each case
costs a few seconds (a 2 s settle and call grace where the list does not lag, a 1.5 s rate window
where only its passing matters), so all 7 presets run: about 100 s in all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from appendq.db.models import BatchStatus
from appendq.drain.tick import drain_once
from appendq.runtime import Runtime
from appendq.settings import Settings
from appendq.simulator.dialect import DIALECTS
from tests.conftest import Sim, batches
from tests.support.dialects import PRESETS, client_overrides, held_because, list_settles
from tests.support.drive import (
    CAMPAIGN,
    SERVICE,
    WINDOW_S,
    drain_until,
    fast_settings,
    invariants,
    path_of,
)
from tests.support.invariants import enqueue, make_leads


@pytest.fixture
def sim3(sim: Sim, dialect: str) -> Sim:
    """The in-thread simulator with a 3 s rate window, like the settings, in ``dialect`` (every
    test here is parametrized on it)."""
    sim.reset(rate_window_s=WINDOW_S, dialect={"preset": dialect})
    return sim


@pytest.fixture
def client(settings: Settings, dialect: str) -> Settings:
    """``settings`` as the client needs them for ``dialect``."""
    return settings.model_copy(update=client_overrides(dialect))


@pytest.fixture
def rt(sim3: Sim, client: Settings) -> Iterator[Runtime]:
    with Runtime.build(fast_settings(client)) as built:
        yield built


#: A short rate window for the scenarios that only wait for it to pass.
SHORT_WINDOW_S = 1.5


def quick_settle(dialect: str) -> dict[str, Any]:
    """A 2 s settle and call grace (deadline 4 s) to keep the scenarios short, but never under
    the list's lag (quiet: 5 s), as the settle's documentation requires."""
    wait_s = max(2.0, DIALECTS[dialect].visible_after_s() or 0.0)
    return {"answered_settle_s": wait_s, "call_grace_s": wait_s}


#: Each way of losing the answer after LiveVox read the body, with whether the call was applied.
ANSWER_LOST: tuple[tuple[str, dict[str, Any], bool], ...] = (
    ("stall past the read timeout, applied", {"stall_s": 2.5, "apply": True}, True),
    ("500 after applying", {"status": 500, "apply": True}, True),
    ("500 without applying", {"status": 500}, False),
    ("connection dropped after applying", {"drop": True, "apply": True}, True),
    ("connection dropped without applying", {"drop": True, "apply": False}, False),
)


def five_services(sim: Sim, dialect: str) -> None:
    """The simulator in ``dialect`` with services 1001.. and their campaigns 5001.., one per way
    of losing the answer, and the short rate window."""
    sim.reset(
        rate_window_s=SHORT_WINDOW_S,
        services=[{"id": 1001 + k, "name": f"S{k}"} for k in range(len(ANSWER_LOST))],
        campaigns=[
            {"id": CAMPAIGN + k, "serviceId": 1001 + k, "name": f"C{k}"}
            for k in range(len(ANSWER_LOST))
        ],
        dialect={"preset": dialect},
    )


def enqueue_each(rt: Runtime, leads: Callable[[int], list[dict[str, Any]]]) -> list[str]:
    """``leads(k)`` queued for service 1001 + k, for each of the five; the ids, in order."""
    ids: list[str] = []
    for k in range(len(ANSWER_LOST)):
        ids += enqueue(rt.settings, leads(k), f"service:{1001 + k}")
    return ids


@pytest.mark.parametrize("dialect", PRESETS)
def test_an_answer_lost_after_the_body_was_sent_is_reconciled(
    sim: Sim, client: Settings, dialect: str
) -> None:
    # Given five services with 3 queued records each, and LiveVox losing the answer to the first
    # Append of each in its own way (stall past the read timeout, 500, dropped connection; applied
    # or not), When ticks run, Then each batch goes in_doubt and the campaign's transaction list
    # settles it where the dialect's list can (appended without a second call if it landed, else
    # sent again exactly once), else it is held for an operator and never sent again; each
    # campaign holds its records once. (One scenario for the five: they share the wait, a 4 s
    # call deadline and 2 s settle, 7 s and 5 s under quiet's 5 s lag.)
    # Each campaign first took one batch answered 204: the transaction list is calibrated, so
    # "none landed" is believed where the list shows it (without it: test_recovery).
    five_services(sim, dialect)
    settles = list_settles(dialect)
    timing = quick_settle(dialect)
    with Runtime.build(fast_settings(client, rate_window_s=SHORT_WINDOW_S, **timing)) as rt:
        ids = enqueue_each(rt, lambda k: [{"phone1": f"312555{k:04d}", "account": f"CAL{k}"}])
        drain_until(rt, ids, {"appended"}, 15, "calibration batches")
        time.sleep(SHORT_WINDOW_S + 0.5)  # a fresh rate window for the faulted calls
        for k, (_, fault, _) in enumerate(ANSWER_LOST):
            ids += enqueue(rt.settings, make_leads(3, start=10 * k), f"service:{1001 + k}")
            sim.fault("append", fault)
        first = [drain_once(rt.drainer()) for _ in ANSWER_LOST]
        assert [r.outcome for r in first] == ["in_doubt"] * len(ANSWER_LOST), first
        final = "appended" if settles else "held"
        drain_until(rt, ids[len(ANSWER_LOST) :], {final}, 25, f"reconciliation: {final}")
        summary = invariants(rt, sim.url, ids, expect={"appended", final})
        for k, (name, _, applied) in enumerate(ANSWER_LOST):
            calls = [c for c in summary.append_calls if c["campaignId"] == CAMPAIGN + k]
            assert len(calls) == (2 if applied or not settles else 3), (name, calls)
            got = [r["account"] for r in sim.records(CAMPAIGN + k)]
            sent = applied or settles
            assert got == [f"CAL{k}"] + [f"A{10 * k + i}" for i in range(3) if sent], (name, got)
            batch = [b for b in batches(rt) if b.target == f"service:{1001 + k}"][-1]
            assert "in_doubt" in path_of(rt, batch.id), name
            if not settles:
                assert held_because(dialect) in (batch.error_message or ""), batch.error_message
    assert len(sim.calls("transactions")) >= len(ANSWER_LOST)


@pytest.mark.parametrize("dialect", PRESETS)
def test_the_rate_limit_answer_puts_the_batch_back_and_pauses_a_whole_window(
    sim: Sim, client: Settings, dialect: str
) -> None:
    # Given a LiveVox that allows 1 Append per window (fewer than the client's 5: another
    # application shares the account) and answers past it with its dialect's status (429, 503,
    # 409 or 403) and a "rate limit" message, When a second batch is drained right after a first,
    # Then the answer is read as the rate limit whatever its status: the batch goes back to
    # ready (not in_doubt, not halted), no call is made for a whole window, then it is appended.
    sim.reset(rate_window_s=SHORT_WINDOW_S, rate_max_calls=1, dialect={"preset": dialect})
    with Runtime.build(fast_settings(client, rate_window_s=SHORT_WINDOW_S)) as rt:
        ids = enqueue(rt.settings, make_leads(5), SERVICE)
        assert drain_once(rt.drainer()).outcome == "appended"
        ids += enqueue(rt.settings, make_leads(5, start=5), SERVICE)
        assert drain_once(rt.drainer()).outcome == "ready"
        assert drain_once(rt.drainer()).outcome == "rate_limited"
        assert batches(rt)[1].status == BatchStatus.READY
        drain_until(rt, ids, {"appended"}, 15, "the batch appended after the pause")
        summary = invariants(rt, sim.url, ids)
    calls = summary.append_calls
    limited = DIALECTS[dialect].rate_limit_status
    assert [c["status"] for c in calls] == [204, limited, 204], calls
    assert calls[2]["at"] - calls[1]["at"] >= SHORT_WINDOW_S


@pytest.mark.parametrize("dialect", PRESETS)
@pytest.mark.parametrize("how", ["sessions expired", "401 on the append"])
def test_401_mid_run_logs_in_again_and_appends_once(
    sim3: Sim, rt: Runtime, how: str, dialect: str
) -> None:
    # Given a drained batch, in each dialect (legacy: unversioned paths), When LiveVox forgets
    # every session (or answers an Append with 401), Then the next tick logs in again and appends
    # the next batch once; nothing lost or doubled.
    ids = enqueue(rt.settings, make_leads(3), SERVICE)
    assert drain_once(rt.drainer()).outcome == "appended"
    if how == "sessions expired":
        sim3.admin.post("/_admin/sessions/expire").raise_for_status()
    else:
        sim3.fault("append", {"status": 401})
    ids += enqueue(rt.settings, make_leads(3, start=3), SERVICE)
    drain_until(rt, ids, {"appended"}, 10, "both batches")
    invariants(rt, sim3.url, ids)
    assert [r["account"] for r in sim3.records(CAMPAIGN)] == [f"A{i}" for i in range(6)]
    assert len(sim3.calls("login")) == 2


@pytest.mark.parametrize("dialect", PRESETS)
def test_campaign_stopped_mid_run_holds_then_a_built_campaign_takes_the_records(
    sim3: Sim, client: Settings, dialect: str
) -> None:
    # Given records appended to today's campaign (cached 1 s), When the campaign is Stopped and
    # more records arrive, Then LiveVox's refusal (409, 400, 403 or 404 by dialect) is read as the
    # campaign's: nothing rejected, the records held with a reason; When a new Built campaign of
    # the service appears (READY, ACTIVE or PREBUILT by dialect; strict adds a malformed entry to
    # every search page), Then they are appended there, once.
    with Runtime.build(fast_settings(client, campaign_cache_s=1.0)) as rt:
        ids = enqueue(rt.settings, make_leads(3), SERVICE)
        assert drain_once(rt.drainer()).outcome == "appended"
        sim3.patch_campaign(CAMPAIGN, status="STOPPED")
        ids += enqueue(rt.settings, make_leads(3, start=3), SERVICE)
        reports = drain_until(rt, ids[3:], {"held"}, 10, "the new records held")
        assert "no appendable campaign" in (reports[-1].reason or "")
        invariants(rt, sim3.url, ids, expect={"appended", "held"})
        sim3.create_campaign(
            id=5002, serviceId=1001, name="Sales 2", typeId=1, status="READY", day="today"
        )
        drain_until(rt, ids, {"appended"}, 10, "the new campaign")
        invariants(rt, sim3.url, ids)
    refused = DIALECTS[dialect].refusal_status
    assert [c["status"] for c in sim3.calls("append")] == [204, refused, 204]
    assert [r["account"] for r in sim3.records(CAMPAIGN)] == ["A0", "A1", "A2"]
    assert [r["account"] for r in sim3.records(5002)] == ["A3", "A4", "A5"]


#: Append calls to isolate one poison record in 6, by how the dialect names it (FIFO kept): the 6
#: refused, the records before the suspects, each suspect alone (two when named "record N": from
#: 0 or from 1; one when named by phone), the records after; bisection when nothing is named
#: (6, 3, 3, 1, 2).
POISON_CALLS = {"zero": 5, "one": 5, "phone": 4, "none": 5}


@pytest.mark.parametrize("dialect", PRESETS)
def test_a_poison_record_is_rejected_alone_and_the_rest_appended(
    sim3: Sim, rt: Runtime, dialect: str
) -> None:
    # Given 6 records of which one carries a value LiveVox refuses (400 naming the record from 0,
    # from 1, by phone or not at all, by dialect), When ticks run, Then that record alone is
    # rejected with a reason and the 5 others are appended, each once, within the calls proven
    # isolation or bisection costs.
    records = make_leads(6)
    records[3]["extra1"] = "POISON"
    ids = enqueue(rt.settings, records, SERVICE)
    drain_until(rt, ids, {"appended", "rejected"}, 30, "isolation")
    summary = invariants(rt, sim3.url, ids, expect={"appended", "rejected"})
    poison = summary.rows[ids[3]]
    assert poison.status == "rejected" and poison.reason, poison
    assert [summary.rows[i].status for i in ids[:3] + ids[4:]] == ["appended"] * 5
    assert [r["account"] for r in sim3.records(CAMPAIGN)] == ["A0", "A1", "A2", "A4", "A5"]
    assert len(summary.append_calls) <= POISON_CALLS[DIALECTS[dialect].numbering]
