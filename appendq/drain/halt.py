"""The account-wide halt: after a 403 (this LiveVox user may not append) or a refused login, no
Append call is made for APPENDQ_HALT_S, then one probe. No retry fixes a role or a password, so
hammering LiveVox would only add noise; ``appendq status`` shows the reason and ``appendq resume``
(or the console) lifts the halt once an operator has fixed the account.

Each halt and each resume is also a row of ``account_events`` with who and why (``record``):
best effort, as for a target set aside, since the halt itself lives in Redis and must hold when
PostgreSQL does not answer."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from appendq.db.models import AccountEvent
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


# KEYS[1] the halt; ARGV[1] its reason as an operator saw it: lifted only while still that one.
_LIFT_IF = """
local now = redis.call('GET', KEYS[1])
if not now then return 0 end
if now ~= ARGV[1] then return -1 end
return redis.call('DEL', KEYS[1])
"""


class HaltChanged(Exception):
    """The halt in force is not the one the operator was shown: nothing was lifted."""


def resume(client: redis.Redis, keys: Keys, seen: str | None = None) -> bool:
    """Lift the halt (only while its reason is still ``seen``, when given: ``HaltChanged``
    otherwise); False when none was in force."""
    if seen is None:
        return bool(client.delete(keys.halt))
    answer = int(client.eval(_LIFT_IF, 1, keys.halt, seen))
    if answer < 0:
        raise HaltChanged()
    return bool(answer)


def lift(
    client: redis.Redis,
    keys: Keys,
    sessions: sessionmaker[Session],
    *,
    account: str,
    reason: str,
    actor: str,
    seen: str | None = None,
) -> bool:
    """Lift ``account``'s halt for an operator, recorded with who and why; False when no halt
    was in force (nothing recorded then). ``seen``: the halt's reason as the operator was shown
    it; another halt in force since is left alone (``HaltChanged``)."""
    if not resume(client, keys, seen):
        return False
    record(sessions, account, "resumed", reason, actor)
    log.warning("account %s: halt lifted by %s: %s", account, actor, reason)
    return True


def record(
    sessions: sessionmaker[Session], account: str, action: str, reason: str, actor: str
) -> None:
    """The audit row of a halt or a resume; a database error is logged, never raised."""
    try:
        with sessions() as session, session.begin():
            session.add(
                AccountEvent(livevox_account=account, action=action, actor=actor, reason=reason)
            )
    except SQLAlchemyError as exc:
        log.error(
            "account %s: %s not recorded in the audit: %s", account, action, type(exc).__name__
        )
