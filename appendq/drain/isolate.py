"""Proven isolation: a batch LiveVox refuses for its content is neither retried as is nor rejected
whole, and no record is rejected on a guess.

How LiveVox numbers records in a refusal ("record 17: ...") is unconfirmed: 0-based, 1-based, by
phone1, or not at all. So a record named by a refusal is set apart only after proof:

- **named, numbering not yet proven**: every record the message can mean (record N 0-based, record
  N 1-based, the records with a named phone1: the *suspects*, at most a few) moves to a batch of its
  own; the rest of the batch goes out again without them. A suspect refused *alone* while a batch
  of the same campaign was accepted since (the rest, typically) is proven bad: rejected, with
  LiveVox's reason; the numbering that named it (if only one did) is now proven and remembered per
  account in Redis (``Keys.numbering``). Cost for one bad record in 10,000: 4 Append calls
  (refused, the 9,998 accepted, the bad one refused alone, the other suspect accepted);
- **named, numbering proven**: the named record is rejected at once and the rest goes out again:
  2 calls;
- **nothing named**: bisection, FIFO kept (the second half becomes a batch right behind the first);
  at most 2 calls per halving, about 2·log2(n) + 1 for one bad record (29 for 10,000);
- **a record refused alone without proof** (no batch of the campaign accepted since its family's
  first refusal): operator_hold as a *suspect*; the next 204 of the same campaign proves it
  bad (``confirm_suspects``: rejected); an operator's ``appendq retry`` decides otherwise;
- **alike refusals**: when ``ALIKE_SINGLES`` single-record parts of one batch are refused with the
  same message (digits aside) and nothing of the campaign was accepted in between, the refusal is
  the campaign's, not the records': the campaign is refused (skipped, re-resolved), the batch and
  its held suspects go back to ready, and no record is rejected;
- **budget**: a batch (with every part split off it) gets at most APPENDQ_ISOLATION_MAX_CALLS
  refused calls; past that it is operator_hold, with the evidence.

``isolate`` returns the ids of the records that ended rejected, so the caller can release their
dedupe reservations once the transaction has committed.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import redis
from sqlalchemy.orm import Session

from appendq.batches import reads
from appendq.batches.history import family_accepted_since, family_events, family_root, held_suspects
from appendq.batches.store import BatchStore, Change
from appendq.batches.views import BatchView, RecordRef
from appendq.db.models import Batch, BatchStatus, RecordStatus
from appendq.errors import Named
from appendq.livevox.classify import canonical_phone
from appendq.target import Target

log = logging.getLogger(__name__)

NUMBERINGS = ("zero", "one", "phone")
#: Single-record parts refused alike (no acceptance between) that make a campaign refusal.
ALIKE_SINGLES = 3


class NumberingMemory(Protocol):
    """Where the account's proven numberings live (Redis in production): one per refusal shape,
    since a numbering proven by one kind of message says nothing of another's numbers."""

    def get(self, shape: str) -> str | None: ...

    def prove(self, numbering: str, shape: str) -> None: ...


class RedisNumbering:
    """The account's proven numberings in Redis, a hash of refusal shape -> numbering
    (``Keys.numbering``; no TTL: a LiveVox account does not change how it numbers records; an
    operator may DEL the key)."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.client = client
        self.key = key

    def get(self, shape: str) -> str | None:
        value = self.client.hget(self.key, shape)
        text = value.decode() if isinstance(value, bytes) else value
        return text if text in NUMBERINGS else None

    def prove(self, numbering: str, shape: str) -> None:
        self.client.hset(self.key, shape, numbering)


@dataclass(frozen=True)
class Isolation:
    status: BatchStatus
    note: str
    #: records that ended rejected in this step (release their dedupe reservations after commit)
    rejected: list[uuid.UUID] = field(default_factory=list)
    #: every part refused alike: the refusal is the campaign's (refuse it, re-resolve)
    campaign_refused: bool = False
    #: the isolation budget is spent: LiveVox keeps refusing this target's records (the drain
    #: sets the target aside, so its refusals stop spending the account's calls)
    budget_spent: bool = False
    #: the batch left ``sending`` (or its version moved) since this drainer sent it: nothing was
    #: split, set apart or moved; the refusal is stale
    fenced: bool = False


def refusal_shape(message: str) -> str:
    """A refusal's message with digits blanked, for telling alike refusals apart."""
    return " ".join(re.sub(r"\d+", "#", message.lower()).split())[:200]


def suspects(records: Sequence[RecordRef], named: Named) -> dict[int, list[str]]:
    """Index of each record the refusal may mean -> the numberings that point at it."""
    found: dict[int, list[str]] = {}
    size = len(records)
    for number in named.numbers:
        if 0 <= number < size:
            found.setdefault(number, []).append("zero")
        if 1 <= number <= size:
            found.setdefault(number - 1, []).append("one")
    phones = set(named.phones)
    if phones:
        for index, rec in enumerate(records):
            if canonical_phone(rec.phone1) in phones:
                found.setdefault(index, []).append("phone")
    return dict(sorted(found.items()))


def isolate(
    store: BatchStore,
    batch: BatchView,
    reason: str,
    *,
    named: Named | None = None,
    memory: NumberingMemory | None = None,
    max_calls: int = 40,
    columns: Change = Change(),  # noqa: B008  (frozen: shared safely)
) -> Isolation:
    """Settle a content refusal of a ``sending`` batch, in the caller's transaction. Fenced first:
    a batch another drainer has moved on since (reaped, reconciled, re-sent) is left alone, before
    anything is split or set apart."""
    session = store.session
    current = session.get(Batch, batch.id, with_for_update=True)
    if current is None or current.status != BatchStatus.SENDING or current.version != batch.version:
        return Isolation(BatchStatus.SENDING, "the batch changed meanwhile", fenced=True)
    named = named or Named()
    records = reads.batch_records(session, batch.id)
    root = family_root(session, batch.id)
    history = family_events(session, root, "refusal")
    shape = refusal_shape(reason)
    step = _Step(store, batch, reason, {"refusal": shape, "records": len(records)}, columns)
    step.mark["numbers"] = list(named.numbers[:5])
    if len(history) + 1 > max_calls:
        note = (
            f"refused for its content ({reason}) {len(history) + 1} times while isolating; past "
            f"the budget of {max_calls} calls, an operator must decide (`appendq retry`)"
        )
        held = step.settle(BatchStatus.OPERATOR_HOLD, note, kind="isolation_budget")
        return replace(held, budget_spent=True)
    if len(records) <= 1 and _alike(session, root, history, shape):
        return _campaign_refusal(step, root)
    if len(records) <= 1:
        return _single(step, records, root, history, memory)
    return _many(step, records, named, memory)


@dataclass
class _Step:
    """One refusal being settled: where to write, the batch, LiveVox's reason, the event's
    detail (``mark``) and the columns the answer sets."""

    store: BatchStore
    batch: BatchView
    reason: str
    mark: dict[str, Any]
    columns: Change

    def settle(
        self,
        status: BatchStatus,
        note: str,
        rejected: list[uuid.UUID] | None = None,
        *,
        kind: str = "rejected",
    ) -> Isolation:
        change = replace(self.columns, error_kind=kind, error_message=note)
        moved = self.store.record_answer(
            self.batch, status, reason=note, change=change, detail=self.mark
        )
        if moved is None:  # fenced off: a newer writer owns the batch; nothing was decided here
            return Isolation(self.batch.status, "the batch changed meanwhile: outcome dropped")
        return Isolation(status, note, rejected or [])


def _many(
    step: _Step, records: list[RecordRef], named: Named, memory: NumberingMemory | None
) -> Isolation:
    candidates = suspects(records, named)
    proven = memory.get(refusal_shape(step.reason)) if memory is not None else None
    trusted = [i for i, how in candidates.items() if proven in how]
    if trusted:
        return _reject_named(step, records, trusted, str(proven))
    if candidates:
        moved = step.store.split_at(step.batch, records, candidates, step.reason)
        note = (
            f"refused for its content ({step.reason}); {len(moved)} suspect(s) the message may "
            f"name (numbering unproven) go out alone in batch(es) {', '.join(map(str, moved))}, "
            "the rest again without them"
        )
        return step.settle(BatchStatus.READY, note)
    child = step.store.split_batch(
        step.batch,
        records,
        "LiveVox refused the batch's content without naming a record: bisecting to find it",
    )
    note = f"refused for its content ({step.reason}); split, second half is batch {child}"
    return step.settle(BatchStatus.READY, note)


def _reject_named(
    step: _Step, records: list[RecordRef], trusted: list[int], proven: str
) -> Isolation:
    """The records named in the account's proven numbering: rejected alone, the rest again."""
    bad = [records[i] for i in trusted]
    for rec in bad:
        step.store.set_record_apart(
            step.batch.id, rec.id, RecordStatus.REJECTED, f"rejected by LiveVox: {step.reason}"
        )
    note = (
        f"LiveVox refused record(s) {', '.join(str(i) for i in trusted)} ({step.reason}), named "
        f"in this account's proven numbering ({proven}): set apart as rejected; the other "
        f"{len(records) - len(bad)} go out again"
    )
    return step.settle(BatchStatus.READY, note, [r.id for r in bad])


def _single(
    step: _Step,
    records: list[RecordRef],
    root: int,
    history: list[tuple[int, int, dict[str, Any]]],
    memory: NumberingMemory | None,
) -> Isolation:
    """A record refused alone: rejected if something of the campaign was accepted since its
    family's first refusal (the refusal is about it), else held as a suspect."""
    session, batch = step.store.session, step.batch
    first = history[0][0] if history else None
    if first is not None and family_accepted_since(session, root, first):
        _learn(session, batch.id, memory)
        note = f"rejected by LiveVox: {step.reason} (refused alone while the rest was accepted)"
        return step.settle(BatchStatus.REJECTED, note, [r.id for r in records])
    note = (
        f"refused alone ({step.reason}) with nothing of campaign {batch.campaign_id} accepted "
        "since: not yet proven to be about this record. Rejected automatically when another "
        "batch of the campaign is accepted; else an operator decides (`appendq retry`)"
    )
    step.mark = {**step.mark, "suspect": _suspect_of(session, batch.id)}
    return step.settle(BatchStatus.OPERATOR_HOLD, note, kind="suspect")


def _alike(
    session: Session, root: int, history: list[tuple[int, int, dict[str, Any]]], shape: str
) -> bool:
    """Whether ALIKE_SINGLES - 1 single-record parts of this family were refused with this
    message before, with no acceptance of the family since the first of them."""
    singles = [(e, d) for e, _, d in history if d.get("records") == 1]
    recent = singles[-(ALIKE_SINGLES - 1) :]
    if len(recent) < ALIKE_SINGLES - 1 or any(d.get("refusal") != shape for _, d in recent):
        return False
    return not family_accepted_since(session, root, recent[0][0])


def _campaign_refusal(step: _Step, root: int) -> Isolation:
    """Every part refused alike: the campaign's refusal. The batch and the family's held
    suspects go back to ready (a pinned campaign: held until its refusal expires)."""
    batch, store = step.batch, step.store
    assert batch.campaign_id is not None
    pinned = Target.parse(batch.target).kind == "campaign"
    note = (
        f"{ALIKE_SINGLES} single records refused alike ({step.reason}) and nothing accepted "
        f"between: the refusal is campaign {batch.campaign_id}'s, not the records'; no record "
        "rejected"
    )
    for suspect in held_suspects(store.session, batch.livevox_account, batch.campaign_id, root):
        view = reads.batch_view(store.session, suspect)
        if view is not None:
            store.requeue(suspect, view.version, note, expect=[BatchStatus.OPERATOR_HOLD])
    status = BatchStatus.HELD if pinned else BatchStatus.READY
    result = step.settle(status, note, kind="campaign_unavailable")
    return Isolation(result.status, note, [], campaign_refused=True)


def confirm_suspects(
    store: BatchStore, account: str, campaign_id: int, *, memory: NumberingMemory | None = None
) -> list[int]:
    """A batch of the account's ``campaign_id`` was just accepted (204). A record refused alone
    is proven bad once a batch of *its own family* (the batch it was cut out of) was accepted
    after its refusal: reject it. Another family's 204 proves nothing about it (the campaign may
    have refused everything a while, in words not recognised as a campaign refusal): it stays
    held for an operator. Returns the batches rejected."""
    session = store.session
    rejected: list[int] = []
    for batch_id in held_suspects(session, account, campaign_id):
        view = reads.batch_view(session, batch_id)
        if view is None or not _family_accepted_after_refusal(session, batch_id):
            continue
        moved = store.move(
            batch_id,
            BatchStatus.REJECTED,
            reason="rejected by LiveVox: refused alone, and another batch of the campaign was "
            "accepted since",
            version=view.version,
            expect=[BatchStatus.OPERATOR_HOLD],
            change=Change(error_kind="rejected"),
        )
        if moved is not None:
            _learn(session, batch_id, memory)
            rejected.append(batch_id)
    return rejected


def _family_accepted_after_refusal(session: Session, batch_id: int) -> bool:
    root = family_root(session, batch_id)
    own = [e for e, b, _ in family_events(session, root, "refusal") if b == batch_id]
    return bool(own) and family_accepted_since(session, root, own[-1])


def _learn(session: Session, batch_id: int, memory: NumberingMemory | None) -> None:
    """A suspect proven bad: the numbering that alone named it is this account's."""
    how = _suspect_of(session, batch_id)["numberings"]
    if memory is None or len(how) != 1 or how[0] not in NUMBERINGS:
        return
    shape = _naming_shape(session, batch_id)
    if shape is None:
        return
    memory.prove(str(how[0]), shape)
    log.warning(
        "LiveVox numbers records in its refusals %s: proven by batch %s",
        how[0],
        batch_id,
        extra={"batch": batch_id, "numbering": how[0]},
    )


def _naming_shape(session: Session, batch_id: int) -> str | None:
    """The shape of the refusal that named this suspect: the family's last refusal naming
    records (``numbers``) before the suspect went out alone."""
    root = family_root(session, batch_id)
    naming = [
        d["refusal"]
        for _, b, d in family_events(session, root, "refusal")
        if b != batch_id and d.get("numbers") and isinstance(d.get("refusal"), str)
    ]
    return naming[-1] if naming else None


def _suspect_of(session: Session, batch_id: int) -> dict[str, Any]:
    """The numberings that named this batch's record when it was cut out as a suspect."""
    root = family_root(session, batch_id)
    for _, ident, detail in family_events(session, root, "split_suspect"):
        if ident == batch_id and isinstance(detail["split_suspect"], list):
            return {"numberings": list(detail["split_suspect"])}
    return {"numberings": []}
