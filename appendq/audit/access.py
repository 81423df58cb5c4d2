"""The access log: every read that returned personal data, with who asked, when, how and what for.

The only writer of the ``access_log`` table. ``record_access`` writes one row per read (an audit
search, a lead lookup, a look at this log itself) in its own short transaction, whether the read
found records or none; the caller writes it before it shows anything, so that a read the log could
not record shows nothing. The filter is kept as asked (``masked_filter``: phone numbers masked to
their last 4 digits, times as ISO text, empty filters left out).

Actors: ``api:<token name>`` over HTTP, ``console:<token name>`` in the console (channel
``ui``), ``operator:<login>`` from the command line. ``read_log`` answers
``appendq audit --access-log``, newest first.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from appendq.audit.cursor import Cursor
from appendq.db.models import ACTOR_MAX, AccessLog
from appendq.errors import InvalidValue
from appendq.redact import mask_phone

Channel = Literal["cli", "http", "ui"]
#: The longest actor (the column's length).
#: Filter keys whose values are phone numbers: masked in the log.
PHONE_KEYS = frozenset({"phone", "phone1"})
#: Text of a filter value kept at most (a record id is 36 characters).
VALUE_MAX = 200


def operator_actor() -> str:
    """``operator:<login>`` of whoever runs the command (``uid-<N>`` if the login is unknown)."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):  # a container's uid without a passwd entry
        login = f"uid-{os.getuid()}"
    return f"operator:{login}"[:ACTOR_MAX]


def masked_filter(where: Mapping[str, Any]) -> dict[str, Any]:
    """The filter as asked, ready to log: None and empty values left out, phone numbers masked,
    times as ISO text, sequences as lists, long text cut."""
    out: dict[str, Any] = {}
    for key, value in where.items():
        if value is None or value == () or value == []:
            continue
        out[key] = _plain(value, key in PHONE_KEYS)
    return out


def _plain(value: Any, phone: bool) -> Any:
    if isinstance(value, list | tuple):
        return [_plain(v, phone) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool | int | float):
        return value
    text = str(value)[:VALUE_MAX]
    if phone:
        return mask_phone(re.sub(r"\D", "", text) or text)
    return text


def record_access(
    sessions: sessionmaker[Session],
    *,
    actor: str,
    channel: Channel,
    action: str,
    where: Mapping[str, Any],
    records: int,
) -> None:
    """One access-log row, committed in its own transaction (raises if it cannot be)."""
    with sessions() as session, session.begin():
        session.add(
            AccessLog(
                actor=actor[:ACTOR_MAX],
                channel=channel,
                action=action,
                filter=masked_filter(where),
                records=records,
            )
        )


@dataclass(frozen=True)
class AccessEntry:
    id: int
    at: datetime
    actor: str
    channel: str
    action: str
    filter: dict[str, Any]
    records: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "channel": self.channel,
            "action": self.action,
            "filter": self.filter,
            "records": self.records,
        }


def read_log(
    session: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str | None = None,
    limit: int = 1000,
    after: str | None = None,
) -> tuple[list[AccessEntry], str | None]:
    """Access-log rows, newest first: at or after ``since``, before ``until``, by ``actor``,
    older than the cursor ``after``; and the cursor of the next page when this one is full.
    ``InvalidValue`` naming ``after`` for a cursor that is not one of the log's."""
    query = select(AccessLog)
    if since is not None:
        query = query.where(AccessLog.at >= since)
    if until is not None:
        query = query.where(AccessLog.at < until)
    if actor is not None:
        query = query.where(AccessLog.actor == actor)
    if after is not None:
        cursor = Cursor.decode(after)
        if cursor.order != "log":
            raise InvalidValue("after", "a cursor of another question, not of the access log")
        at, last = cursor.keys
        query = query.where(AccessLog.at <= at, tuple_(AccessLog.at, AccessLog.id) < (at, last))
    rows = session.scalars(query.order_by(AccessLog.at.desc(), AccessLog.id.desc()).limit(limit))
    found = [
        AccessEntry(r.id, r.at, r.actor, r.channel, r.action, dict(r.filter), r.records)
        for r in rows
    ]
    full = len(found) == limit and found
    return found, Cursor("log", (found[-1].at, found[-1].id)).encode() if full else None
