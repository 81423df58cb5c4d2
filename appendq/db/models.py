"""The audit tables: batches (current state), records (one row per accepted record), events
(append-only, one row per transition, with who and why) and the per-target hold state."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


#: The longest actor name an event or an access-log row holds.
ACTOR_MAX = 64
#: The longest LiveVox account name (``appendq.accounts.NAME``).
ACCOUNT_MAX = 32


class BatchStatus(StrEnum):
    """Where a batch stands. The moves between them are ``appendq.batches.lifecycle.TRANSITIONS``;
    the groups below are the only lists of statuses the code uses."""

    READY = "ready"  # persisted, waiting for a campaign and a rate slot
    SENDING = "sending"  # committed before the PUT; the window that cannot be closed
    APPENDED = "appended"  # LiveVox answered 204
    RETRY_WAIT = "retry_wait"  # a transient failure; next_attempt_at says when
    IN_DOUBT = "in_doubt"  # the body may have landed; reconcile before sending again
    HELD = "held"  # no appendable campaign, or a configuration problem: waits, with a reason
    #: waits for an operator's decision (some records may be at LiveVox, or a record refused alone
    #: is not proven bad): never sent again by the drain, no longer blocks its target
    OPERATOR_HOLD = "operator_hold"
    REJECTED = "rejected"  # LiveVox refused the content; not sent again as is
    FAILED = "failed"  # gave up after the configured attempts; an operator may retry
    DRY_RUN = "dry_run"  # built and audited by a dry-run worker; no Append call was made


#: Batches still to go out, in FIFO order per target: the oldest one blocks its target's later ones.
OPEN_STATUSES = (
    BatchStatus.READY,
    BatchStatus.RETRY_WAIT,
    BatchStatus.HELD,
    BatchStatus.SENDING,
    BatchStatus.IN_DOUBT,
)
#: Batches the drain may send now (a retry_wait one once it is due).
SENDABLE_STATUSES = (BatchStatus.READY, BatchStatus.RETRY_WAIT, BatchStatus.HELD)
#: Batches whose records the campaign may hold, though not for sure.
MAY_HAVE_LANDED = (BatchStatus.SENDING, BatchStatus.IN_DOUBT, BatchStatus.OPERATOR_HOLD)
#: Batches whose story is over (an operator may still retry some): finished_at is set, prune
#: may drop them.
FINISHED_STATUSES = (
    BatchStatus.APPENDED,
    BatchStatus.REJECTED,
    BatchStatus.FAILED,
    BatchStatus.DRY_RUN,
)
#: Batches an operator may send again (``appendq retry``).
RETRYABLE_STATUSES = (
    BatchStatus.FAILED,
    BatchStatus.HELD,
    BatchStatus.OPERATOR_HOLD,
    BatchStatus.IN_DOUBT,
    BatchStatus.REJECTED,
    BatchStatus.RETRY_WAIT,
    BatchStatus.DRY_RUN,  # built by a dry-run worker: send it for real
)
#: Moves to these are routine (logged at INFO); a move to any other status is a WARNING.
ROUTINE_STATUSES = (BatchStatus.READY, BatchStatus.SENDING, BatchStatus.APPENDED)
#: Batches a retry may make LiveVox hold twice: an operator must name them with their state.
MAY_DUPLICATE = (BatchStatus.IN_DOUBT, BatchStatus.OPERATOR_HOLD)


class RecordStatus(StrEnum):
    BATCHED = "batched"  # in an open batch (ready, sending, retry_wait)
    APPENDED = "appended"
    REJECTED = "rejected"
    HELD = "held"
    IN_DOUBT = "in_doubt"
    FAILED = "failed"
    DUPLICATE = "duplicate"
    DRY_RUN = "dry_run"


def _enum(enum: type[StrEnum], name: str) -> Enum:
    return Enum(
        enum,
        name=name,
        native_enum=False,
        length=16,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    #: The LiveVox account (``appendq.accounts``) whose target this is; not the lead's account
    #: number (``Record.account``).
    livevox_account: Mapped[str] = mapped_column(String(ACCOUNT_MAX), nullable=False)
    target: Mapped[str] = mapped_column(String(40), nullable=False)
    service_id: Mapped[int | None] = mapped_column(BigInteger)
    campaign_id: Mapped[int | None] = mapped_column(BigInteger)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[BatchStatus] = mapped_column(_enum(BatchStatus, "batch_status"), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    http_status: Mapped[int | None] = mapped_column(Integer)
    error_kind: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    call_ms: Mapped[int | None] = mapped_column(Integer)
    #: FIFO order within a target is (coalesce(origin_id, id), first_position): a batch split off
    #: another (poison bisection) keeps the root batch's id and the claim position of its first
    #: record, so it goes out right where its records stood in the queue.
    origin_id: Mapped[int | None] = mapped_column(BigInteger)
    first_position: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    #: The fence: +1 on every transition. A writer that read the batch at version N may move it
    #: only while it is still at N, so a batch that left a status and came back (in_doubt ->
    #: ready -> sending -> in_doubt) never takes a stale verdict or a late outcome.
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    #: The enqueue times of its records, first and last (a split's part keeps its whole's: a
    #: wider range is still true). An audit of a campaign in a time window reads only the part
    #: of the window its batches' records can be in. NULL: not known (not used to narrow).
    enqueued_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    enqueued_to: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index(
            "ix_batches_open",
            "status",
            "created_at",
            postgresql_where="status IN ('ready', 'retry_wait', 'held', 'sending', 'in_doubt')",
        ),
        Index("ix_batches_account_target_created", "livevox_account", "target", "created_at"),
        # audit --campaign, retry --campaign
        Index("ix_batches_campaign", "campaign_id", postgresql_where="campaign_id IS NOT NULL"),
        # the status and the console's overview: batches per account and status, index only
        Index("ix_batches_account_status", "livevox_account", "status"),
        # the console: records appended per minute, an account's last append per target
        Index(
            "ix_batches_appended_at",
            "livevox_account",
            "finished_at",
            postgresql_where="status = 'appended'",
        ),
        Index(
            "ix_batches_appended_target_at",
            "livevox_account",
            "target",
            "finished_at",
            postgresql_where="status = 'appended'",
        ),
    )


class Record(Base):
    """Partitioned by UTC day on ``id`` (a version-7 id starts with its millisecond), with a
    DEFAULT partition: ``appendq.db.partitions`` (migration 0010)."""

    __tablename__ = "records"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    #: The LiveVox account of the record's batch (kept here so an audit filters without a join).
    livevox_account: Mapped[str] = mapped_column(String(ACCOUNT_MAX), nullable=False)
    target: Mapped[str] = mapped_column(String(40), nullable=False)
    phone1: Mapped[str] = mapped_column(String(32), nullable=False)
    account: Mapped[str | None] = mapped_column(String(50))
    #: The LiveVox record kept for retry, encrypted (``appendq.crypto``) under the key named by
    #: ``payload_key``; decrypted only to send or re-send it. NULL once its finished batch is past
    #: APPENDQ_PII_RETENTION_DAYS (``appendq prune``). phone1 and account stay clear above.
    payload_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    payload_key: Mapped[str | None] = mapped_column(String(16))
    #: The record in clear, as written before migration 0007 only (NULL for every record since):
    #: ``appendq rotate-keys`` encrypts what is left into payload_enc.
    legacy_payload: Mapped[dict[str, Any] | None] = mapped_column(
        "payload", JSONB(none_as_null=True)
    )
    #: NULL while the record shares its batch's fate; set when it parts from it (a poison record
    #: rejected alone, a duplicate). The effective status is ``records_effective_status()``.
    status: Mapped[RecordStatus | None] = mapped_column(_enum(RecordStatus, "record_status"))
    reason: Mapped[str | None] = mapped_column(Text)
    enqueued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = _now()
    #: who submitted the record: the API token's name (an intake token sees only its own)
    submitted_by: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_records_batch_position", "batch_id", "position"),
        Index("ix_records_phone1", "phone1"),
        Index("ix_records_account", "account", postgresql_where="account IS NOT NULL"),
        # audit --service [--since/--until]: one target's records in time order
        Index("ix_records_target_enqueued", "target", "enqueued_at"),
        # audit --since/--until alone, or with --campaign/--status: walk time order, stop at limit
        Index("ix_records_enqueued", "enqueued_at"),
        # audit --status for records that parted from their batch (duplicate, rejected alone): few
        Index(
            "ix_records_parted",
            "status",
            "enqueued_at",
            postgresql_where="status IS NOT NULL",
        ),
        {"postgresql_partition_by": "RANGE (id)"},
    )


class Event(Base):
    """Append-only: one row per transition of a batch (record_id NULL) or of one record.
    Partitioned by UTC day on ``at`` (``appendq.db.partitions``), so the table's primary key is
    (id, at); ``id`` alone is unique too (one sequence)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), nullable=False)
    record_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    at: Mapped[datetime] = _now()
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16), nullable=False)
    actor: Mapped[str] = mapped_column(String(ACTOR_MAX), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONB)

    __table_args__ = (
        Index("ix_events_batch_at", "batch_id", "at"),
        {"postgresql_partition_by": "RANGE (at)"},
    )


class TargetState(Base):
    """Why a target's records wait, when they do; the campaign it last resolved to."""

    __tablename__ = "target_states"

    livevox_account: Mapped[str] = mapped_column(String(ACCOUNT_MAX), primary_key=True)
    target: Mapped[str] = mapped_column(String(40), primary_key=True)
    campaign_id: Mapped[int | None] = mapped_column(BigInteger)
    hold_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = _now()


class TargetEvent(Base):
    """Append-only: a target set aside (a bulkhead: its trouble never stops another target) or
    cleared, with who and why. The live flag is in Redis (``appendq.drain.set_aside``); this
    is the audit. ``target`` is text: a malformed target is exactly what may be set aside."""

    __tablename__ = "target_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    livevox_account: Mapped[str] = mapped_column(String(ACCOUNT_MAX), nullable=False)
    target: Mapped[str] = mapped_column(Text, nullable=False)
    at: Mapped[datetime] = _now()
    action: Mapped[str] = mapped_column(String(16), nullable=False)  # set_aside | cleared
    kind: Mapped[str | None] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(ACTOR_MAX), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_target_events_account_target_at", "livevox_account", "target", "at"),
    )


class AccountEvent(Base):
    """Append-only: an account's Append calls halted (a 403, a refused login) or resumed by an
    operator, with who and why. The live halt is in Redis (``appendq.drain.halt``)."""

    __tablename__ = "account_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    livevox_account: Mapped[str] = mapped_column(String(ACCOUNT_MAX), nullable=False)
    at: Mapped[datetime] = _now()
    action: Mapped[str] = mapped_column(String(16), nullable=False)  # halted | resumed
    actor: Mapped[str] = mapped_column(String(ACTOR_MAX), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_account_events_account_at", "livevox_account", "at"),)


class AccessLog(Base):
    """Append-only: every read that returned personal data (an audit, a lead lookup), with who
    asked, when, how (cli, http) and with what filter (phone numbers in it masked)."""

    __tablename__ = "access_log"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = _now()
    actor: Mapped[str] = mapped_column(String(ACTOR_MAX), nullable=False)
    channel: Mapped[str] = mapped_column(String(16), nullable=False)  # cli | http | ui
    action: Mapped[str] = mapped_column(String(32), nullable=False)  # audit | lead | preview ...
    filter: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    records: Mapped[int] = mapped_column(Integer, nullable=False)  # how many records it returned

    __table_args__ = (
        Index("ix_access_log_at", "at"),
        Index("ix_access_log_actor_at", "actor", "at"),
    )


#: A record's status while it follows its batch.
RECORD_STATUS_OF_BATCH: dict[BatchStatus, RecordStatus] = {
    BatchStatus.READY: RecordStatus.BATCHED,
    BatchStatus.SENDING: RecordStatus.BATCHED,
    BatchStatus.RETRY_WAIT: RecordStatus.BATCHED,
    BatchStatus.APPENDED: RecordStatus.APPENDED,
    BatchStatus.IN_DOUBT: RecordStatus.IN_DOUBT,
    BatchStatus.HELD: RecordStatus.HELD,
    BatchStatus.OPERATOR_HOLD: RecordStatus.HELD,
    BatchStatus.REJECTED: RecordStatus.REJECTED,
    BatchStatus.FAILED: RecordStatus.FAILED,
    BatchStatus.DRY_RUN: RecordStatus.DRY_RUN,
}
