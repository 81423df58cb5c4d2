"""Prometheus metrics read from the truth at scrape time: Redis for what waits, PostgreSQL for what
happened. Whichever process did the work (worker, intake, CLI), every ``/metrics`` shows the same.

| metric                                | labels              | source                       |
|---------------------------------------|---------------------|------------------------------|
| appendq_queue_depth                   | account,target      | Redis: queued + in flight    |
| appendq_queue_oldest_age_seconds      | account,target      | Redis: head record           |
| appendq_rate_budget_remaining         | account             | Redis: rate limiter budget   |
| appendq_halted                        | account             | Redis: the account's halt    |
| appendq_target_set_aside              | account,target,kind | Redis: set_aside             |
| appendq_batches                       | account,status      | PostgreSQL: batches          |
| appendq_records                       | account,status      | batch sizes + parted records |
| appendq_target_held                   | account,target      | target_states.hold_reason    |
| appendq_append_call_seconds           |                     | batches.call_ms, last 24 h   |
| appendq_last_append_timestamp_seconds |                     | max finished_at, appended    |
| appendq_source_up                     | source              | 1 when it answered           |

Every one is a gauge but ``appendq_append_call_seconds``, a gaugehistogram. ``account`` is the
LiveVox account (``appendq.accounts``; ``default`` without an accounts file): two accounts may
have a target of the same name. The Redis families cover every configured account; the
PostgreSQL ones every account that has batches (an account since removed from the accounts file
included), each configured one with every status, at 0 if need be.

A source that fails (Redis down, a slow query) drops only its own families for that scrape and
shows ``appendq_source_up{source=...} 0``; the scrape itself still answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import timedelta

import redis
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from appendq.audit import timeline
from appendq.db.models import (
    RECORD_STATUS_OF_BATCH,
    Batch,
    BatchStatus,
    Record,
    RecordStatus,
    TargetState,
)
from appendq.drain import halt, set_aside
from appendq.runtime import Lane, Runtime

log = logging.getLogger(__name__)

LATENCY_WINDOW = timedelta(hours=24)
LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: A scrape must never load PostgreSQL for long: each metrics transaction stops after this.
STATEMENT_TIMEOUT_MS = 2_000


def registry_for(rt: Runtime) -> CollectorRegistry:
    """A fresh registry holding only appendq's collector (never the process-global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AppendqCollector(rt))
    return registry


class AppendqCollector:
    """Reads Redis and PostgreSQL on every ``collect()``; holds no state of its own."""

    def __init__(self, rt: Runtime, *, latency_window: timedelta = LATENCY_WINDOW) -> None:
        self.rt = rt
        self.latency_window = latency_window

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "appendq_source_up", "1 when the source answered this scrape", labels=["source"]
        )
        yield from self._guarded("redis", self._from_redis, up)
        yield from self._guarded("postgres", self._from_postgres, up)
        yield up

    def _guarded(
        self, source: str, read: Callable[[], list[Metric]], up: GaugeMetricFamily
    ) -> list[Metric]:
        try:
            families = read()
        except (redis.RedisError, SQLAlchemyError, OSError) as exc:
            log.warning("metrics: %s did not answer: %s", source, type(exc).__name__)
            up.add_metric([source], 0)
            return []
        up.add_metric([source], 1)
        return families

    def _from_redis(self) -> list[Metric]:
        families = _redis_families()
        for name in self.rt.accounts:
            _read_lane(self.rt.lane(name), families)
        return list(families.values())

    def _from_postgres(self) -> list[Metric]:
        with self.rt.sessions() as session, session.begin():
            session.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
            return [
                *_statuses(session, self.rt.accounts),
                self._latency(session),
                _held_targets(session),
                *_last_append(session),
            ]

    def _latency(self, session: Session) -> GaugeHistogramMetricFamily:
        since = func.now() - self.latency_window
        bounds_ms = [int(b * 1000) for b in LATENCY_BUCKETS_S]
        columns = [func.count().filter(Batch.call_ms <= ms) for ms in bounds_ms]
        row = session.execute(
            select(*columns, func.count(), func.coalesce(func.sum(Batch.call_ms), 0)).where(
                Batch.call_ms.is_not(None), Batch.sent_at >= since
            )
        ).one()
        *within, total, sum_ms = (int(v) for v in row)
        buckets = [(_le(b), float(n)) for b, n in zip(LATENCY_BUCKETS_S, within, strict=True)]
        buckets.append(("+Inf", float(total)))
        hours = self.latency_window.total_seconds() / 3600
        return GaugeHistogramMetricFamily(
            "appendq_append_call_seconds",
            f"Duration of the LiveVox Append calls sent in the last {hours:g} h "
            "(a window, not a counter: use histogram_quantile on the buckets directly)",
            buckets=buckets,
            gsum_value=sum_ms / 1000,
        )


def _le(bound: float) -> str:
    return f"{bound:g}"


def _redis_families() -> dict[str, GaugeMetricFamily]:
    """The families read from Redis, empty, by short name."""
    return {
        "depth": GaugeMetricFamily(
            "appendq_queue_depth",
            "Records waiting in Redis (queued + in flight)",
            labels=["account", "target"],
        ),
        "age": GaugeMetricFamily(
            "appendq_queue_oldest_age_seconds",
            "Age of the record that will be claimed next",
            labels=["account", "target"],
        ),
        "budget": GaugeMetricFamily(
            "appendq_rate_budget_remaining",
            "Append calls the account may make right now in its rolling rate window",
            labels=["account"],
        ),
        "halted": GaugeMetricFamily(
            "appendq_halted",
            "1 while the account's Append calls are halted (a 403, a refused login; the reason "
            "is in `appendq status`, `appendq resume --account` lifts it)",
            labels=["account"],
        ),
        "aside": GaugeMetricFamily(
            "appendq_target_set_aside",
            "1 while a target is set aside (skipped by the drain until an operator clears it; "
            "the reason is in `appendq targets`)",
            labels=["account", "target", "kind"],
        ),
    }


def _read_lane(lane: Lane, families: dict[str, GaugeMetricFamily]) -> None:
    """One account's samples of the Redis families."""
    name, queue = lane.account.name, lane.queue
    for target in queue.targets():
        families["depth"].add_metric([name, target], queue.depth(target))
        head = queue.oldest(target)
        age = timeline.age_s(head.enqueued_at) if head else 0.0
        families["age"].add_metric([name, target], age)
    families["budget"].add_metric([name], lane.limiter.budget().remaining)
    stopped = halt.current(lane.redis, lane.keys)
    families["halted"].add_metric([name], 0 if stopped is None else 1)
    for entry in set_aside.current(lane.redis, lane.keys).values():
        families["aside"].add_metric([name, entry.target, entry.kind], 1)


def _statuses(session: Session, accounts: Iterable[str]) -> list[Metric]:
    """Batches by account and status; records by account and status from batch sizes, corrected
    by the records that parted from their batch (a poison record rejected alone, a duplicate):
    those are few, and found through the partial index ``ix_records_parted``, so no scrape walks
    the records table. Every status of every configured account is shown, 0 if need be."""
    batches = {a: dict.fromkeys(BatchStatus, 0) for a in accounts}
    records = {a: dict.fromkeys(RecordStatus, 0) for a in accounts}
    size = func.coalesce(func.sum(Batch.size), 0)
    rows = session.execute(
        select(Batch.livevox_account, Batch.status, func.count(), size).group_by(
            Batch.livevox_account, Batch.status
        )
    ).all()
    for account, status, count, total in rows:
        batches.setdefault(account, dict.fromkeys(BatchStatus, 0))[status] = int(count)
        of_account = records.setdefault(account, dict.fromkeys(RecordStatus, 0))
        of_account[RECORD_STATUS_OF_BATCH[status]] += int(total)
    parted = session.execute(
        select(Batch.livevox_account, Batch.status, Record.status, func.count())
        .join(Batch, Batch.id == Record.batch_id)
        .where(Record.status.is_not(None))
        .group_by(Batch.livevox_account, Batch.status, Record.status)
    ).all()
    for account, batch_status, record_status, count in parted:
        records[account][RECORD_STATUS_OF_BATCH[batch_status]] -= int(count)
        records[account][RecordStatus(str(record_status))] += int(count)
    return [
        _by_status("appendq_batches", "Batches by account and status", batches),
        _by_status("appendq_records", "Records in the audit by account and status", records),
    ]


def _by_status(
    name: str,
    documentation: str,
    counts: Mapping[str, Mapping[BatchStatus, int]] | Mapping[str, Mapping[RecordStatus, int]],
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["account", "status"])
    for account, by_status in counts.items():
        for status, count in by_status.items():
            family.add_metric([account, status.value], count)
    return family


def _held_targets(session: Session) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "appendq_target_held",
        "1 while a target's records wait with a hold reason (no appendable campaign, a "
        "configuration problem); the reason is in `appendq status`",
        labels=["account", "target"],
    )
    query = select(TargetState.livevox_account, TargetState.target, TargetState.hold_reason)
    for account, target, reason in session.execute(query):
        family.add_metric([account, target], 0 if reason is None else 1)
    return family


def _last_append(session: Session) -> list[Metric]:
    last = session.scalar(
        select(func.max(Batch.finished_at)).where(Batch.status == BatchStatus.APPENDED)
    )
    if last is None:
        return []
    return [
        GaugeMetricFamily(
            "appendq_last_append_timestamp_seconds",
            "When the last batch was appended (Unix time)",
            value=last.timestamp(),
        )
    ]
