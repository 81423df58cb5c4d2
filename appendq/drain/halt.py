"""The account-wide halt: after a 403 (this LiveVox user may not append) or a refused login, no
Append call is made for APPENDQ_HALT_S, then one probe. No retry fixes a role or a password, so
hammering LiveVox would only add noise; ``appendq status`` shows the reason and ``appendq resume``
lifts the halt once an operator has fixed the account."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from appendq.keys import Keys

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Halt:
    reason: str
    remaining_s: float


def halt(client: redis.Redis, keys: Keys, reason: str, seconds: float) -> None:
    client.set(keys.halt, reason, px=max(int(seconds * 1000), 1))
    log.error(
        "ALERT: Append calls halted for %.0f s: %s",
        seconds,
        reason,
        extra={"alert": "livevox_configuration", "halt_s": seconds},
    )


def current(client: redis.Redis, keys: Keys) -> Halt | None:
    with client.pipeline(transaction=False) as pipe:
        pipe.get(keys.halt)
        pipe.pttl(keys.halt)
        reason, ttl_ms = pipe.execute()
    if reason is None:
        return None
    text = reason.decode() if isinstance(reason, bytes) else str(reason)
    return Halt(text, max(int(ttl_ms), 0) / 1000)


def resume(client: redis.Redis, keys: Keys) -> bool:
    return bool(client.delete(keys.halt))
