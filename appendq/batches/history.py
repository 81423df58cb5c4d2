"""A batch's history and its campaign's, read from PostgreSQL (read-only): what reconciliation
weighs a transaction list against (the calibration batch, the records the campaign is known or
may be known to hold, when the batch's answer came) and what isolation proves a refusal with (a
batch's family: the root batch and the batches split off it, their refusals and acceptances,
the suspects held)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ScalarSelect, func, select
from sqlalchemy.orm import Session

from appendq.db.models import MAY_HAVE_LANDED, Batch, BatchStatus, Event, Record


@dataclass(frozen=True)
class Calibration:
    """A batch of the campaign that LiveVox answered 204: its records are known to have landed,
    so a transaction list that shows them is seen to show appended records."""

    batch_id: int
    #: seconds between its answer and now (PostgreSQL's clock)
    age_s: float
    #: sent after the batch being reconciled was sent
    after: bool


def calibration_batch(session: Session, campaign_id: int, batch_id: int) -> Calibration | None:
    """The youngest batch of ``campaign_id`` (any target of ``batch_id``'s account: another
    account's LiveVox may number its campaigns alike) appended on a 204 answer, other than
    ``batch_id``: the one most likely still missing from a list that lags."""
    sent = session.scalar(select(Batch.sent_at).where(Batch.id == batch_id))
    row = session.execute(
        select(
            Batch.id,
            func.extract("epoch", func.now() - Batch.finished_at),
            Batch.sent_at,
        )
        .where(
            Batch.campaign_id == campaign_id,
            Batch.livevox_account == _account_of(batch_id),
            Batch.status == BatchStatus.APPENDED,
            Batch.http_status == 204,
            Batch.id != batch_id,
            Batch.finished_at.is_not(None),
        )
        .order_by(Batch.finished_at.desc(), Batch.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    ident, age, calibration_sent = row
    after = sent is not None and calibration_sent is not None and calibration_sent > sent
    return Calibration(ident, float(age or 0.0), after)


def _account_of(batch_id: int) -> ScalarSelect[str]:
    """The LiveVox account of a batch, as a subquery: campaign ids are only unique within one."""
    return select(Batch.livevox_account).where(Batch.id == batch_id).scalar_subquery()


def seconds_since_answer(session: Session, batch_id: int) -> float | None:
    """Seconds since the batch last went from sending to in_doubt (its answer came, or was
    lost): any record of it that landed did so before then (or within the late-landing wait).
    A reconciliation's "look again" (in_doubt -> in_doubt) does not count."""
    value = session.scalar(
        select(func.extract("epoch", func.now() - func.max(Event.at))).where(
            Event.batch_id == batch_id,
            Event.from_status == BatchStatus.SENDING,
            Event.to_status == BatchStatus.IN_DOUBT,
            Event.record_id.is_(None),
        )
    )
    return float(value) if value is not None else None


@dataclass(frozen=True)
class KnownRecord:
    """A record the campaign holds, or may hold, through another batch."""

    batch_id: int
    phone1: str
    account: str | None
    #: its batch is appended (landed for sure); else in doubt (sending, in_doubt, held partly)
    landed: bool


def known_records(
    session: Session, campaign_id: int, phones: Sequence[str], *, exclude_batch: int
) -> list[KnownRecord]:
    """Records of other batches of ``campaign_id`` (any target of ``exclude_batch``'s account,
    any day) with one of these phone1
    values (as stored), that the campaign holds (appended batches) or may hold (sending, in_doubt,
    or operator_hold). Records set apart are left out."""
    if not phones:
        return []
    landed = Batch.status == BatchStatus.APPENDED
    maybe = Batch.status.in_(MAY_HAVE_LANDED)
    rows = session.execute(
        select(Record.batch_id, Record.phone1, Record.account, landed)
        .join(Batch, Batch.id == Record.batch_id)
        .where(
            Batch.campaign_id == campaign_id,
            Batch.livevox_account == _account_of(exclude_batch),
            Batch.id != exclude_batch,
            landed | maybe,
            Record.status.is_(None),
            Record.phone1 == func.any(list(set(phones))),
        )
    ).all()
    return [KnownRecord(b, p, a, bool(sure)) for b, p, a, sure in rows]


def family_root(session: Session, batch_id: int) -> int:
    """The root batch of a batch split off others (poison isolation): its family's id."""
    root = session.scalar(
        select(func.coalesce(Batch.origin_id, Batch.id)).where(Batch.id == batch_id)
    )
    return int(root) if root is not None else batch_id


def family_events(
    session: Session, root_id: int, key: str
) -> list[tuple[int, int, dict[str, Any]]]:
    """(event id, batch id, detail) of the family's events whose detail carries ``key``, oldest
    first: a family is a root batch and every batch split off it."""
    rows = session.execute(
        select(Event.id, Event.batch_id, Event.detail)
        .join(Batch, Batch.id == Event.batch_id)
        .where(
            func.coalesce(Batch.origin_id, Batch.id) == root_id,
            Event.detail.has_key(key),
        )
        .order_by(Event.id)
    ).all()
    return [(int(e), int(b), dict(d)) for e, b, d in rows]


def held_suspects(
    session: Session, account: str, campaign_id: int, root_id: int | None = None
) -> list[int]:
    """Batches held for an operator because LiveVox refused them alone without proof that the
    refusal was about them (``appendq.drain.isolate``; their last event's detail says
    ``suspect``): of
    a campaign, or of one family. Few: each is one record."""
    query = select(Batch.id).where(
        Batch.livevox_account == account,
        Batch.campaign_id == campaign_id,
        Batch.status == BatchStatus.OPERATOR_HOLD,
    )
    if root_id is not None:
        query = query.where(func.coalesce(Batch.origin_id, Batch.id) == root_id)
    found: list[int] = []
    for batch_id in session.scalars(query.order_by(Batch.id)):
        last = session.scalar(
            select(Event.detail)
            .where(Event.batch_id == batch_id, Event.record_id.is_(None))
            .order_by(Event.id.desc())
            .limit(1)
        )
        if isinstance(last, dict) and "suspect" in last:
            found.append(batch_id)
    return found


def family_accepted_since(session: Session, root_id: int, since_event: int) -> bool:
    """Whether a batch of the family was appended on a 204 after event ``since_event``."""
    found = session.scalar(
        select(Event.id)
        .join(Batch, Batch.id == Event.batch_id)
        .where(
            func.coalesce(Batch.origin_id, Batch.id) == root_id,
            Event.id > since_event,
            Event.to_status == BatchStatus.APPENDED,
            Batch.http_status == 204,
        )
        .limit(1)
    )
    return found is not None
