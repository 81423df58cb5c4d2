"""The Append call itself: one PUT with a total deadline, its rate slot kept counted while it
runs.

Right before the PUT the drain makes sure it is still the one that should send: it still holds
the drain lease (asked of Redis), and no more than the call grace (at least ``MIN_SLACK_S``) has
passed since its rate slot was granted. A drainer frozen between committing ``sending`` and the
PUT (a stopped VM, a long pause) would otherwise wake up and send a batch that another drainer
has since reaped, reconciled and re-sent, in a slot that has left the window; instead it makes no
call (``NotSent``: the batch goes to retry_wait, fenced on its version). What no check can close:
a freeze after the last check while the body is being written; LiveVox takes no idempotency key,
and reconciliation then holds the batch for an operator when it cannot tell."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import redis

from appendq.drain.context import Drainer
from appendq.drain.lease import LeaseLost
from appendq.errors import AnswerLost, LiveVoxError, NotSent
from appendq.livevox.ratelimit import Slot

log = logging.getLogger(__name__)

#: The least slack between a rate slot and its call, whatever APPENDQ_CALL_GRACE_S says.
MIN_SLACK_S = 0.5


def too_late(d: Drainer, slot: Slot) -> str | None:
    """Why this drainer must not make the call now, or None."""
    slack = max(d.settings.call_grace_s, MIN_SLACK_S)
    waited = time.monotonic() - slot.granted_at
    if waited > slack:
        return (
            f"call not made: {waited:.1f} s passed since its rate slot (more than {slack:g} s); "
            "another drainer may own the batch now"
        )
    try:
        d.check_lease()
    except LeaseLost as exc:
        return f"call not made: {exc}"
    return None


def call_append(
    d: Drainer, batch_id: int, campaign_id: int, payloads: list[dict[str, object]], slot: Slot
) -> tuple[LiveVoxError | None, float | None]:
    """One Append call (see ``append_within_deadline``). A ``SessionExpired`` answer is for the
    caller: it logs in again and re-fences the batch before it repeats the call."""
    return append_within_deadline(d, batch_id, campaign_id, payloads, slot)


@contextmanager
def calling(d: Drainer, batch_id: int) -> Iterator[None]:
    """Mark the batch's call as in flight (``Keys.calling``) for as long as it really runs, even
    past its total deadline: reconciliation never weighs a batch whose call may still land."""
    key = d.keys.calling(batch_id)
    ttl_ms = max(int(d.settings.call_deadline_s * 1000), 1000)
    d.redis.set(key, d.actor, px=ttl_ms)
    stop = threading.Event()

    def keep() -> None:
        while not stop.wait(ttl_ms / 3000):
            with suppress(redis.RedisError):
                d.redis.pexpire(key, ttl_ms)

    keeper = threading.Thread(target=keep, name="call-marker", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        stop.set()
        keeper.join(timeout=5)
        with suppress(redis.RedisError):
            d.redis.delete(key)


def append_within_deadline(
    d: Drainer, batch_id: int, campaign_id: int, payloads: list[dict[str, object]], slot: Slot
) -> tuple[LiveVoxError | None, float | None]:
    """One Append call with a total deadline (httpx's timeouts bound each read, not the call).

    The call runs on its own thread while its rate slot is kept counted (``in_flight``). A call
    still running at the deadline is left to end on its own: its slot stays counted until it
    does, and its answer counts as lost (the batch goes in_doubt and is reconciled)."""
    box: dict[str, Any] = {}

    def run() -> None:
        stale = too_late(d, slot)
        if stale is not None:
            log.error("%s", stale)
            d.limiter.release(slot)
            box["error"] = NotSent(stale)
            return
        with d.limiter.in_flight([slot]), calling(d, batch_id):
            try:
                box["elapsed"] = d.client.append(campaign_id, payloads)
            except LiveVoxError as exc:
                box["error"] = exc
            except Exception as exc:  # after the body may have left: never a silent re-send
                box["error"] = AnswerLost(f"answer lost: {type(exc).__name__}")

    thread = threading.Thread(target=run, name="append-call", daemon=True)
    thread.start()
    thread.join(d.settings.call_total_s)
    if thread.is_alive():
        limit = d.settings.call_total_s
        return AnswerLost(f"no answer within the call's total deadline ({limit:.0f} s)"), None
    return box.get("error"), box.get("elapsed")
