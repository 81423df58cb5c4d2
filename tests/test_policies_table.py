"""The retry policy, table-driven: ``backoff_s`` and ``should_give_up``, ``settle`` (every error
class, with its flags and waits) and ``in_doubt_wait_s``. Pure functions: no Redis, no PostgreSQL,
no clock (the jitter's draw is injected). The classification that feeds them:
``tests.test_classify_table``."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from appendq import errors
from appendq.db.models import BatchStatus
from appendq.drain.backoff import backoff_s, should_give_up
from appendq.drain.settle import Outcome, in_doubt_wait_s, settle
from appendq.settings import Settings


def always(value: float) -> Callable[[], float]:
    return lambda: value


# -- backoff ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "base", "cap", "rand", "wait"),
    [
        (1, 1.0, 100.0, 1.0, 1.0),  # the first failure: the base, whatever the draw
        (2, 1.0, 100.0, 1.0, 2.0),  # then doubling: 2, 4, 8 ...
        (3, 1.0, 100.0, 1.0, 4.0),
        (4, 1.0, 100.0, 1.0, 8.0),
        (4, 3.0, 100.0, 1.0, 24.0),
        (8, 1.0, 100.0, 1.0, 100.0),  # 128 capped at 100
        (7, 1.0, 64.0, 1.0, 64.0),  # exactly at the cap
        (3, 1.0, 100.0, 0.0, 1.0),  # full jitter: the draw 0 gives the base ...
        (3, 1.0, 100.0, 0.5, 2.5),  # ... and scales the rest: 1 + (4 - 1) * 0.5
        (8, 20.0, 900.0, 0.25, 20.0 + 880.0 * 0.25),
        (3, 10.0, 5.0, 1.0, 10.0),  # a cap below the base: never less than the base
        (5000, 1.0, 60.0, 1.0, 60.0),  # no overflow however many attempts
    ],
)
def test_backoff_grows_from_the_base_to_the_cap_with_full_jitter(
    attempt: int, base: float, cap: float, rand: float, wait: float
) -> None:
    # Given the n-th failure, a base and a cap, and the jitter's draw in [0, 1) / When the
    # backoff is computed / Then it is base + (min(cap, base * 2**(n-1)) - base) * draw.
    assert backoff_s(attempt, base_s=base, cap_s=cap, rand=always(rand)) == pytest.approx(wait)


def test_backoff_jitter_spreads_over_its_whole_range() -> None:
    # Given the default random source / When the 4th failure's backoff is drawn 400 times /
    # Then every wait is within [base, base * 8] and they spread over the whole range.
    rng = random.Random(7)
    waits = [backoff_s(4, base_s=2.0, cap_s=100.0, rand=rng.random) for _ in range(400)]
    assert all(2.0 <= w <= 16.0 for w in waits)
    assert min(waits) < 3.0 and max(waits) > 15.0
    assert all(2.0 <= backoff_s(4, base_s=2.0, cap_s=100.0) <= 16.0 for _ in range(50))


@pytest.mark.parametrize("attempt", [0, -1])
def test_backoff_counts_attempts_from_one(attempt: int) -> None:
    # Given an attempt number below 1 / When the backoff is asked / Then it is refused.
    with pytest.raises(ValueError, match="from 1"):
        backoff_s(attempt, base_s=1.0, cap_s=2.0)


@pytest.mark.parametrize(
    ("attempts", "limit", "give_up"), [(1, 8, False), (7, 8, False), (8, 8, True), (9, 8, True)]
)
def test_give_up_once_the_attempts_reach_the_limit(
    attempts: int, limit: int, give_up: bool
) -> None:
    assert should_give_up(attempts, limit) is give_up


# -- settle -----------------------------------------------------------------------------------

SETTINGS = Settings(
    retry_max_attempts=3,
    retry_base_s=1.0,
    retry_cap_s=4.0,
    answered_settle_s=5.0,
    livevox_connect_timeout_s=2.0,
    livevox_read_timeout_s=30.0,
    call_grace_s=3.0,
)
NAMED = errors.Named((2,), ("2125550001",))
E = errors

S = BatchStatus

#: error, attempts, pinned -> status, error_kind, retry_after_s, flags: pause the rate (p),
#: skip the campaign (r), halt the account (h)
SETTLED: list[tuple[errors.LiveVoxError, int, bool, BatchStatus, str, float | None, str]] = [
    (E.RateLimited("slow", status=429), 1, False, S.READY, "rate_limited", None, "p"),
    (E.RateLimited("slow", status=503), 9, False, S.READY, "rate_limited", None, "p"),
    (E.AnswerLost("boom", status=500), 1, False, S.IN_DOUBT, "answer_lost", 5.0, ""),
    (E.AnswerLost("boom", status=500), 9, False, S.IN_DOUBT, "answer_lost", 5.0, ""),
    (E.AnswerLost("timeout"), 1, False, S.IN_DOUBT, "answer_lost", 35.0, ""),
    (E.AnswerLost("gateway", status=504), 1, False, S.IN_DOUBT, "answer_lost", 35.0, ""),
    (E.Transient("read timeout"), 1, False, S.RETRY_WAIT, "transient", 1.0, ""),
    (E.Transient("read timeout"), 2, False, S.RETRY_WAIT, "transient", None, ""),
    (E.Transient("read timeout"), 3, False, S.FAILED, "transient", None, ""),
    (E.NotSent("refused"), 1, False, S.RETRY_WAIT, "not_sent", 1.0, ""),
    (E.NotSent("refused"), 50, False, S.RETRY_WAIT, "not_sent", None, ""),
    (E.SessionExpired("expired", status=401), 1, False, S.READY, "session", None, ""),
    (E.SessionExpired("expired", status=401), 50, True, S.READY, "session", None, ""),
    (E.Rejected("bad", status=400, named=NAMED), 1, False, S.REJECTED, "rejected", None, ""),
    (E.CampaignUnavailable("stop"), 1, False, S.READY, "campaign_unavailable", None, "r"),
    (E.CampaignUnavailable("stop"), 1, True, S.HELD, "campaign_unavailable", None, "r"),
    (E.Forbidden("role", status=403), 1, False, S.HELD, "forbidden", None, "h"),
    (E.LoginDenied("password"), 1, False, S.HELD, "login_denied", None, "h"),
    (E.Configuration("base URL"), 1, True, S.HELD, "configuration", None, "h"),
    (E.TargetRefused("search", status=403), 1, False, S.HELD, "target_refused", None, "h"),
]


@pytest.mark.parametrize(
    ("error", "attempts", "pinned", "status", "kind", "wait", "flags"),
    SETTLED,
    ids=[
        f"{type(row[0]).__name__}-{row[1]}-{'pinned' if row[2] else 'service'}" for row in SETTLED
    ],
)
def test_settle_decides_each_error_once(
    error: errors.LiveVoxError,
    attempts: int,
    pinned: bool,
    status: BatchStatus,
    kind: str,
    wait: float | None,
    flags: str,
) -> None:
    # Given an Append that ended with this error at this attempt (3 at most; backoff 1..4 s;
    # answered settle 5 s, call deadline 35 s) / When settled / Then the batch's status, its
    # error kind and HTTP status, the wait before the next try and what else must happen:
    # pause the rate (p), skip the campaign (r), halt the account (h).
    got = settle(error, attempts=attempts, settings=SETTINGS, pinned=pinned)
    assert (got.status, got.error_kind, got.http_status) == (status, kind, error.status)
    assert (got.pause_rate, got.refuse_campaign, got.halt) == (
        "p" in flags,
        "r" in flags,
        "h" in flags,
    )
    assert got.named == error.named
    if status == BatchStatus.RETRY_WAIT:
        ceiling = min(4.0, 2.0 ** (attempts - 1))
        assert got.retry_after_s is not None and 1.0 <= got.retry_after_s <= ceiling
    if wait is not None:
        assert got.retry_after_s == pytest.approx(wait)
    elif status != BatchStatus.RETRY_WAIT:
        assert got.retry_after_s is None


@pytest.mark.parametrize(
    ("error", "attempts", "reason"),
    [
        (E.Transient("read timeout"), 3, "gave up after 3 attempts: read timeout"),
        (E.Transient("read timeout"), 2, "read timeout"),
        (E.Forbidden("role AGENT", status=403), 1, "configuration error, an operator must act: "),
        (E.SessionExpired("expired", status=401), 1, "expired (HTTP 401)"),
        (E.Rejected("record 2 bad", status=400), 1, "record 2 bad (HTTP 400)"),
    ],
)
def test_settle_says_why(error: errors.LiveVoxError, attempts: int, reason: str) -> None:
    # Given an error / When settled / Then the reason carries the error's text (and why).
    got = settle(error, attempts=attempts, settings=SETTINGS)
    assert got.reason is not None and got.reason.startswith(reason)
    assert str(error) in got.reason


def test_a_call_without_error_is_appended() -> None:
    # Given an Append answered 204 / When settled / Then appended, nothing else to do.
    assert settle(None, attempts=5, settings=SETTINGS) == Outcome(
        BatchStatus.APPENDED, http_status=204
    )


def test_a_campaign_refusal_is_about_a_service_target_unless_pinned() -> None:
    # Given a campaign refusal settled without saying the target is pinned / Then the batch
    # waits for another campaign of the service (ready), not for an operator.
    got = settle(E.CampaignUnavailable("stopped"), attempts=1, settings=SETTINGS)
    assert (got.status, got.refuse_campaign) == (BatchStatus.READY, True)


@pytest.mark.parametrize(("status", "answered"), [(500, True), (202, True), (None, False)])
def test_in_doubt_waits_the_settle_or_the_whole_deadline(
    status: int | None, answered: bool
) -> None:
    wait = in_doubt_wait_s(E.AnswerLost("x", status=status), SETTINGS)
    assert wait == (5.0 if answered else 35.0)
