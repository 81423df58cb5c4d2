"""``BatchStore``: the only writer of batches, their records and their events (procrastinate's
``manager.py`` is the model). PostgreSQL is the source of truth once a batch is committed.

Every move is one of ``lifecycle.TRANSITIONS`` (anything else raises ``IllegalTransition``) and
writes one ``events`` row with actor and reason. Moves are fenced: each adds 1 to the batch's
``version``, and a writer that read the batch at version N moves it only while it is still at N,
so a batch that left a status and came back (a second drainer re-sent it meanwhile) refuses a
stale verdict or a late answer; a refused move returns None and the caller must not act on what
it knew. The columns a move may set are the fields of ``Change``: none can be misspelt.

The helpers ``claims`` (a claim becomes a batch), ``parts`` (a batch split, a record set apart),
``payloads`` (re-encryption, personal-data retention), ``prune`` (retention) and ``rekey`` (key
rotation) write only through here or under its rules, in the caller's session.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Delete, delete, func, text, update
from sqlalchemy.orm import Session

from appendq.batches import claims, lifecycle, parts, payloads, reads
from appendq.batches.views import BatchView, RecordRef, view_of
from appendq.crypto import PayloadCipher
from appendq.db.models import (
    FINISHED_STATUSES,
    SENDABLE_STATUSES,
    Batch,
    BatchStatus,
    Event,
    Record,
    RecordStatus,
)
from appendq.errors import InvalidValue
from appendq.queue.record_queue import Claim

S = BatchStatus


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: A column a move leaves as it is.
UNSET: Any = _Unset()


@dataclass(frozen=True)
class Change:
    """The columns a move sets besides status and version; UNSET ones are left as they are.
    ``sent_at`` and ``next_attempt_at`` may be SQL expressions (PostgreSQL's clock)."""

    campaign_id: int | None = UNSET
    attempts: int = UNSET
    http_status: int | None = UNSET
    error_kind: str | None = UNSET
    error_message: str | None = UNSET
    call_ms: int | None = UNSET
    sent_at: Any = UNSET
    next_attempt_at: Any = UNSET


def after(delay: timedelta | None) -> Any:
    """``next_attempt_at`` ``delay`` from now on PostgreSQL's clock (None: no next attempt)."""
    return None if delay is None else func.now() + delay


class BatchStore:
    """Writes in the caller's session and transaction, as ``actor``."""

    def __init__(self, session: Session, actor: str) -> None:
        self.session = session
        self.actor = actor

    # -- the one move ------------------------------------------------------------------------

    def move(
        self,
        batch_id: int,
        to: BatchStatus,
        *,
        reason: str | None,
        version: int | None,
        expect: Sequence[BatchStatus] | None = None,
        change: Change = Change(),
        detail: dict[str, Any] | None = None,
    ) -> BatchView | None:
        """Move a batch to ``to`` and record the event. ``expect``: the statuses it may move
        from here (default: every source the table allows). ``version``: the fence (None only
        for a batch locked and read in this very transaction). None when refused."""
        batch = self._movable(batch_id, expect or lifecycle.sources(to), version)
        if batch is None:
            return None
        previous = batch.status
        lifecycle.check(previous, to, batch_id)
        batch.status = to
        batch.version = batch.version + 1
        batch.updated_at = func.now()  # PostgreSQL's clock: workers' clocks may be off
        for column in fields(change):
            value = getattr(change, column.name)
            if not isinstance(value, _Unset):
                setattr(batch, column.name, value)
        if to in FINISHED_STATUSES:
            batch.finished_at = func.now()
        event = Event(batch_id=batch_id, from_status=previous, to_status=to, actor=self.actor)
        event.reason, event.detail = reason, detail
        self.session.add(event)
        self.session.flush()
        lifecycle.log_transition(batch, previous, self.actor, reason)
        return view_of(batch)

    def _movable(
        self, batch_id: int, expect: Sequence[BatchStatus], version: int | None
    ) -> Batch | None:
        """The batch, row locked, when it is in an expected status at the expected version."""
        batch = self.session.get(Batch, batch_id, with_for_update=True)
        if batch is None or batch.status not in expect:
            return None
        if version is not None and batch.version != version:
            lifecycle.log.warning(
                "batch %s: fenced off a stale writer (read at version %s, now %s, %s)",
                batch_id,
                version,
                batch.version,
                batch.status,
                extra={"batch": batch_id, "actor": self.actor},
            )
            return None
        return batch

    # -- the drain's moves -------------------------------------------------------------------

    def persist_claim(self, claim: Claim) -> BatchView | None:
        """A claim as a new ``ready`` batch; commits (see ``claims.persist_claim``)."""
        return claims.persist_claim(self.session, claim, actor=self.actor)

    def mark_sending(
        self, batch: BatchView, campaign_id: int, reason: str, records: int
    ) -> BatchView | None:
        """``sending``, committed before the call: of two drainers that read the same batch,
        only one can send it."""
        self.set_target_state(
            batch.livevox_account, batch.target, campaign_id=campaign_id, hold_reason=None
        )
        change = Change(campaign_id=campaign_id, attempts=batch.attempts + 1, sent_at=func.now())
        detail = {"campaign": campaign_id, "records": records}
        return self.move(
            batch.id,
            S.SENDING,
            reason=reason,
            version=batch.version,
            expect=SENDABLE_STATUSES,
            change=change,
            detail=detail,
        )

    def send_again(self, sent: BatchView, reason: str) -> BatchView | None:
        """Still ``sending``, re-fenced, ``sent_at`` now: the call is made a second time."""
        return self.move(
            sent.id,
            S.SENDING,
            reason=reason,
            version=sent.version,
            expect=[S.SENDING],
            change=Change(sent_at=func.now()),
        )

    def hold(self, batch: BatchView, reason: str) -> BatchView | None:
        """``held``: no appendable campaign, or the account needs an operator."""
        self.set_target_state(
            batch.livevox_account, batch.target, campaign_id=None, hold_reason=reason
        )
        if batch.status == S.HELD:
            return batch
        return self.move(
            batch.id,
            S.HELD,
            reason=reason,
            version=batch.version,
            expect=[S.READY, S.RETRY_WAIT],
            change=Change(error_kind="held", error_message=reason),
        )

    def close_empty(self, batch: BatchView, reason: str) -> BatchView | None:
        """Every record parted from the batch (duplicates): ``appended`` without a call."""
        return self.move(
            batch.id, S.APPENDED, reason=reason, version=batch.version, expect=SENDABLE_STATUSES
        )

    def mark_dry_run(
        self, batch: BatchView, campaign_id: int, reason: str, records: int
    ) -> BatchView | None:
        self.set_target_state(
            batch.livevox_account, batch.target, campaign_id=campaign_id, hold_reason=None
        )
        detail = {"campaign": campaign_id, "records": records, "dry_run": True}
        return self.move(
            batch.id,
            S.DRY_RUN,
            reason=reason,
            version=batch.version,
            expect=SENDABLE_STATUSES,
            change=Change(campaign_id=campaign_id),
            detail=detail,
        )

    def record_answer(
        self,
        batch: BatchView,
        to: BatchStatus,
        *,
        reason: str | None,
        change: Change,
        detail: dict[str, Any] | None = None,
    ) -> BatchView | None:
        """What LiveVox's answer (or its absence) means, for a batch sent at ``batch.version``."""
        return self._fenced(batch, S.SENDING, to, reason, change, detail)

    def reap(self, batch_id: int, version: int, reason: str) -> BatchView | None:
        """A batch left ``sending`` past the call deadline: its process died mid-call."""
        change = Change(error_kind="in_doubt", error_message=reason)
        return self.move(
            batch_id, S.IN_DOUBT, reason=reason, version=version, expect=[S.SENDING], change=change
        )

    def reconciled(
        self,
        batch: BatchView,
        to: BatchStatus,
        *,
        reason: str,
        change: Change,
        detail: dict[str, Any] | None = None,
    ) -> BatchView | None:
        """An in_doubt batch weighed against LiveVox's transaction list."""
        return self._fenced(batch, S.IN_DOUBT, to, reason, change, detail)

    def _fenced(
        self,
        batch: BatchView,
        source: BatchStatus,
        to: BatchStatus,
        reason: str | None,
        change: Change,
        detail: dict[str, Any] | None,
    ) -> BatchView | None:
        """``batch`` from ``source`` to ``to``, only while still at the version it was read at."""
        return self.move(
            batch.id,
            to,
            reason=reason,
            version=batch.version,
            expect=[source],
            change=change,
            detail=detail,
        )

    def look_again_later(self, batch: BatchView) -> None:
        """The transaction list could not be read: to the back of the reconciliation line (its
        due time counts from now). Not a transition: no event, no new version."""
        self.session.execute(
            update(Batch)
            .where(Batch.id == batch.id, Batch.version == batch.version)
            .where(Batch.status == S.IN_DOUBT)
            .values(updated_at=func.now())
        )

    def requeue(
        self,
        batch_id: int,
        version: int,
        reason: str,
        *,
        expect: Sequence[BatchStatus],
        change: Change = Change(),
        detail: dict[str, Any] | None = None,
    ) -> BatchView | None:
        """Back to ``ready``: an operator's retry, a refusal that proved to be the campaign's.
        ``InvalidValue`` for a batch whose personal data was dropped: it cannot be sent again."""
        if reads.has_dropped_payloads(self.session, batch_id):
            raise InvalidValue(
                "batch",
                f"batch {batch_id}: the personal data of its records was dropped "
                "(APPENDQ_PII_RETENTION_DAYS): it cannot be sent again",
            )
        return self.move(
            batch_id,
            S.READY,
            reason=reason,
            version=version,
            expect=expect,
            change=change,
            detail=detail,
        )

    def set_target_state(
        self, account: str, target: str, *, campaign_id: int | None, hold_reason: str | None
    ) -> None:
        """Why an account's target's records wait, and the campaign it last resolved to."""
        self.session.execute(
            text(
                "INSERT INTO target_states "
                "(livevox_account, target, campaign_id, hold_reason, updated_at) "
                "VALUES (:a, :t, :c, :r, now()) ON CONFLICT (livevox_account, target) "
                "DO UPDATE SET campaign_id = EXCLUDED.campaign_id, "
                "hold_reason = EXCLUDED.hold_reason, updated_at = now()"
            ),
            {"a": account, "t": target, "c": campaign_id, "r": hold_reason},
        )

    # -- a batch parts -------------------------------------------------------------------------

    def set_record_apart(
        self, batch_id: int, record_id: uuid.UUID, status: RecordStatus, reason: str
    ) -> None:
        parts.set_record_apart(
            self.session, batch_id, record_id, status, actor=self.actor, reason=reason
        )

    def split_at(
        self,
        batch: BatchView,
        records: list[RecordRef],
        candidates: dict[int, list[str]],
        reason: str,
    ) -> list[int]:
        return parts.split_at(
            self.session, batch, records, candidates, actor=self.actor, reason=reason
        )

    def split_batch(self, batch: BatchView, records: Sequence[RecordRef], reason: str) -> int:
        return parts.split_batch(self.session, batch, records, actor=self.actor, reason=reason)

    # -- retention -------------------------------------------------------------------------------

    def prune(self, where: list[ColumnElement[bool]], chunk: int) -> tuple[int, int, int]:
        """Delete up to ``chunk`` batches matching ``where`` (row locked, SKIP LOCKED: one an
        operator is retrying right now waits for the next run) with their records and events.
        Returns (batches, records, events) deleted."""
        return self.delete(reads.lock_chunk(self.session, where, chunk))

    def delete(self, ids: Sequence[int]) -> tuple[int, int, int]:
        """Delete the batches ``ids`` (already row locked by the caller) with their records and
        events. Returns (batches, records, events) deleted."""
        if not ids:
            return 0, 0, 0
        # A batch's rows sit in one or two daily partitions; with hundreds of ids PostgreSQL
        # estimates each partition holds many of them and scans every one of them whole (7 M
        # rows a day: seconds each). Their batch index finds them, or finds none, at once.
        self.session.execute(text("SET LOCAL enable_seqscan = off"))
        events = self._deleted(delete(Event).where(Event.batch_id.in_(ids)))
        records = self._deleted(delete(Record).where(Record.batch_id.in_(ids)))
        return self._deleted(delete(Batch).where(Batch.id.in_(ids))), records, events

    def drop_payloads(self, where: list[ColumnElement[bool]], chunk: int) -> tuple[int, int]:
        """The payloads of up to ``chunk`` batches matching ``where`` set to NULL (personal-data
        retention; see ``payloads.drop_chunk``). Returns (batches, records)."""
        return payloads.drop_chunk(self.session, where, chunk)

    def reseal_payloads(
        self, cipher: PayloadCipher, after: uuid.UUID | None, chunk: int
    ) -> tuple[int, uuid.UUID | None]:
        """Up to ``chunk`` payloads past ``after`` re-encrypted under the current key (see
        ``payloads.reseal_chunk``)."""
        return payloads.reseal_chunk(self.session, cipher, after, chunk)

    def _deleted(self, statement: Delete) -> int:
        return cast(CursorResult[Any], self.session.execute(statement)).rowcount
