"""Bulkheads: a target whose own trouble would stop the drain is set aside, and the tick goes on.

Nothing about one target may stop another. A target is set aside, with its reason, when:

- ``persist``: its claim cannot be persisted (PostgreSQL refuses the data, not the connection);
- ``malformed``: its name cannot be parsed (a queue written by something else, an old bug);
- ``search``: LiveVox refuses the campaign search for that service (a 4xx about that service:
  not a reason to halt the account);
- ``refused``: LiveVox keeps refusing its records past the isolation budget;
- ``error``: its drain failed unexpectedly ``FAILURES_BEFORE_SET_ASIDE`` ticks in a row;
- ``operator``: an operator set it aside (``appendq targets set-aside``).

Only account-wide evidence (a refused login, a 403 on Append) halts the account
(``appendq.drain.halt``).
A set-aside target keeps its queue: producers still accept its records, nothing is dropped, and
``appendq targets clear TARGET --reason ...`` puts it back in the drain. The live flag is a Redis
hash (read every tick, beside the queues it guards); every set-aside and clear is also an
append-only ``target_events`` row in PostgreSQL with who and why (the audit). ``appendq status``,
``appendq targets`` and ``/metrics`` (``appendq_target_set_aside``) show it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import redis
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from appendq.db.models import TargetEvent
from appendq.keys import Keys
from appendq.livevox.classify import clean_message

log = logging.getLogger(__name__)

KINDS = ("persist", "malformed", "search", "refused", "error", "operator")
FAILURES_BEFORE_SET_ASIDE = 3
REASON_MAX = 500


@dataclass(frozen=True)
class SetAside:
    target: str
    kind: str
    reason: str
    at: float  # Unix time
    actor: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "kind": self.kind,
            "reason": self.reason,
            "at": self.at,
            "actor": self.actor,
        }


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def current(client: redis.Redis, keys: Keys) -> dict[str, SetAside]:
    """Every set-aside target, by name."""
    found = {}
    for raw_target, raw in client.hgetall(keys.set_aside).items():
        target = _text(raw_target)
        data = json.loads(raw)
        found[target] = SetAside(target, data["kind"], data["reason"], data["at"], data["actor"])
    return found


def set_aside(
    client: redis.Redis,
    keys: Keys,
    sessions: sessionmaker[Session],
    target: str,
    *,
    kind: str,
    reason: str,
    actor: str,
    account: str,
) -> SetAside:
    """Set ``target`` aside (or update why it is); the drain skips it until it is cleared.
    ``keys`` are those of ``account`` (``Keys.for_account``)."""
    if kind not in KINDS:
        raise ValueError(f"unknown set-aside kind {kind!r}")
    entry = SetAside(target, kind, clean_message(reason)[:REASON_MAX], time.time(), actor)
    client.hset(keys.set_aside, target, json.dumps(entry.to_dict()))
    client.hdel(keys.target_failures, target)
    _record(sessions, account, target, "set_aside", kind, entry.reason, actor)
    log.error(
        "ALERT: target %s set aside (%s): %s; `appendq targets clear` puts it back",
        target[:60],
        kind,
        entry.reason,
        extra={"alert": "target_set_aside", "target": target[:60], "kind": kind},
    )
    return entry


def clear(
    client: redis.Redis,
    keys: Keys,
    sessions: sessionmaker[Session],
    target: str,
    *,
    reason: str,
    actor: str,
    account: str,
) -> bool:
    """Put a set-aside target back in the drain; False when it was not set aside."""
    if not client.hdel(keys.set_aside, target):
        return False
    client.hdel(keys.target_failures, target)
    _record(sessions, account, target, "cleared", None, reason, actor)
    log.warning("target %s cleared by %s: %s", target[:60], actor, reason)
    return True


def note_failure(client: redis.Redis, keys: Keys, target: str) -> int:
    """One more tick that failed on ``target`` unexpectedly; returns how many in a row."""
    return int(client.hincrby(keys.target_failures, target, 1))


def note_success(client: redis.Redis, keys: Keys, target: str) -> None:
    client.hdel(keys.target_failures, target)


def history(
    session: Session, account: str | None = None, target: str | None = None, limit: int = 100
) -> list[TargetEvent]:
    """The latest set-aside and clear events (of one account, of one target), newest first."""
    query = select(TargetEvent).order_by(TargetEvent.id.desc()).limit(limit)
    if account is not None:
        query = query.where(TargetEvent.livevox_account == account)
    if target is not None:
        query = query.where(TargetEvent.target == target)
    return list(session.scalars(query))


def _record(
    sessions: sessionmaker[Session],
    account: str,
    target: str,
    action: str,
    kind: str | None,
    reason: str,
    actor: str,
) -> None:
    """The audit row. PostgreSQL being down must not keep a target from being set aside (the
    flag is in Redis): the failure is logged and the flag still holds."""
    try:
        with sessions() as session, session.begin():
            session.add(
                TargetEvent(
                    livevox_account=account,
                    target=target,
                    action=action,
                    kind=kind,
                    actor=actor,
                    reason=reason,
                )
            )
    except SQLAlchemyError as exc:
        log.error("target %s: %s not recorded in the audit: %s", target[:60], action, exc)
