"""What an Append call's result means for its batch: a pure function of the error, the attempt
count and the settings. The one place where retrying is decided."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from appendq import errors
from appendq.db.models import BatchStatus
from appendq.drain.backoff import backoff_s, should_give_up
from appendq.settings import Settings


@dataclass(frozen=True)
class Outcome:
    status: BatchStatus
    reason: str | None = None
    error_kind: str | None = None
    http_status: int | None = None
    retry_after_s: float | None = None  # retry_wait: how long from now (PostgreSQL's clock)
    pause_rate: bool = False  # a 429: refuse every slot for a whole window
    refuse_campaign: bool = False  # the campaign refuses appends: skip it for the day
    halt: bool = False  # no retry fixes this (role, credentials): halt Append calls, alert
    #: what a refusal's raw message named (record numbers, phones): for isolation; never logged
    named: errors.Named = field(default_factory=errors.Named, repr=False)


def settle(
    error: errors.LiveVoxError | None,
    *,
    attempts: int,
    settings: Settings,
    pinned: bool = False,
) -> Outcome:
    if error is None:
        return Outcome(BatchStatus.APPENDED, http_status=204)

    def out(status: BatchStatus, reason: str = str(error), **flags: Any) -> Outcome:
        return Outcome(status, reason, error.kind, error.status, named=error.named, **flags)

    if isinstance(error, errors.RateLimited):
        return out(BatchStatus.READY, pause_rate=True)
    if isinstance(error, errors.AnswerLost):
        return out(BatchStatus.IN_DOUBT, retry_after_s=in_doubt_wait_s(error, settings))
    if isinstance(error, errors.Transient):
        # Nothing reached LiveVox on a connect failure: an outage never turns a batch failed (it
        # would let newer records overtake it); other transient errors give up after N attempts.
        exhausted = should_give_up(attempts, settings.retry_max_attempts)
        if exhausted and not isinstance(error, errors.NotSent):
            return out(BatchStatus.FAILED, f"gave up after {attempts} attempts: {error}")
        wait = backoff_s(attempts, base_s=settings.retry_base_s, cap_s=settings.retry_cap_s)
        return out(BatchStatus.RETRY_WAIT, retry_after_s=wait)
    if isinstance(error, errors.SessionExpired):
        return out(BatchStatus.READY)
    if isinstance(error, errors.Rejected):
        return out(BatchStatus.REJECTED)
    if isinstance(error, errors.CampaignUnavailable):
        return out(BatchStatus.HELD if pinned else BatchStatus.READY, refuse_campaign=True)
    # Forbidden, LoginDenied, other configuration errors: no retry will fix them.
    return out(BatchStatus.HELD, f"configuration error, an operator must act: {error}", halt=True)


def in_doubt_wait_s(error: errors.AnswerLost, settings: Settings) -> float:
    """How long an in-doubt batch waits before it is reconciled. LiveVox *answered* (500, 503,
    202): the call is over, a short settle lets the list catch up. No answer (timeout, dropped
    connection) or a gateway's 502/504: LiveVox may still be working on the request, so a whole
    call deadline (see ``appendq.drain.reconcile``)."""
    if error.answered:
        return settings.answered_settle_s
    return settings.call_deadline_s
