"""Prometheus metrics read from the truth at scrape time: Redis for what waits, PostgreSQL for what
happened. Whichever process did the work (worker, intake, CLI), every ``/metrics`` shows the same.

| metric                                   | type           | labels         | source                      |
|------------------------------------------|----------------|----------------|-----------------------------|
| appendq_queue_depth                      | gauge          | account,target | Redis: queued + in flight   |
| appendq_queue_oldest_age_seconds         | gauge          | account,target | Redis: head record          |
| appendq_rate_budget_remaining            | gauge          | account        | Redis: rate limiter budget  |
| appendq_halted                           | gauge          | account        | Redis: the account's halt   |
| appendq_target_set_aside                 | gauge          | account,target,kind | Redis: set_aside       |
| appendq_batches                          | gauge          | account,status | PostgreSQL: batches         |
| appendq_records                          | gauge          | account,status | batch sizes + parted records|
| appendq_target_held                      | gauge          | account,target | target_states.hold_reason   |
| appendq_append_call_seconds              | gaugehistogram |                | batches.call_ms, last 24 h  |
| appendq_last_append_timestamp_seconds    | gauge          |                | max finished_at, appended   |
| appendq_source_up                        | gauge          | source         | 1 when it answered          |

``account`` is the LiveVox account (``appendq.accounts``; ``default`` without an accounts file):
two accounts may have a target of the same name. The Redis families cover every configured
account; the PostgreSQL ones every account that has batches (an account since removed from the
accounts file included), each configured one with every status, at 0 if need be.

A source that fails (Redis down, a slow query) drops only its own families for that scrape and
shows ``appendq_source_up{source=...} 0``; the scrape itself still answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
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
from appendq.drain import set_aside
from appendq.runtime import Runtime

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
        queue = self.rt.queue
        depth = GaugeMetricFamily(
            "appendq_queue_depth",
            "Records waiting in Redis (queued + in flight)",
            labels=["target"],
        )
        age = GaugeMetricFamily(
            "appendq_queue_oldest_age_seconds",
            "Age of the record that will be claimed next",
            labels=["target"],
        )
        for target in queue.targets():
            depth.add_metric([target], queue.depth(target))
            head = queue.oldest(target)
            age.add_metric([target], timeline.age_s(head.enqueued_at) if head else 0.0)
        budget = GaugeMetricFamily(
            "appendq_rate_budget_remaining",
            "Append calls allowed right now in the rolling rate window",
            value=self.rt.limiter.budget().remaining,
        )
        aside = GaugeMetricFamily(
            "appendq_target_set_aside",
            "1 while a target is set aside (skipped by the drain until an operator clears it; "
            "the reason is in `appendq targets`)",
            labels=["target", "kind"],
        )
        for entry in set_aside.current(self.rt.redis, self.rt.keys).values():
            aside.add_metric([entry.target, entry.kind], 1)
        return [depth, age, budget, aside]

    def _from_postgres(self) -> list[Metric]:
        with self.rt.sessions() as session, session.begin():
            session.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
            return [
                *_statuses(session),
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


def _statuses(session: Session) -> list[Metric]:
    """Batches by status; records by status from batch sizes, corrected by the records that
    parted from their batch (a poison record rejected alone, a duplicate): those are few, and
    found through the partial index ``ix_records_parted``, so no scrape walks the records table."""
    batches = {s: 0 for s in BatchStatus}
    records = {s: 0 for s in RecordStatus}
    rows = session.execute(
        select(Batch.status, func.count(), func.coalesce(func.sum(Batch.size), 0)).group_by(
            Batch.status
        )
    ).all()
    for status, count, size in rows:
        batches[status] = int(count)
        records[RECORD_STATUS_OF_BATCH[status]] += int(size)
    parted = session.execute(
        select(Batch.status, Record.status, func.count())
        .join(Batch, Batch.id == Record.batch_id)
        .where(Record.status.is_not(None))
        .group_by(Batch.status, Record.status)
    ).all()
    for batch_status, record_status, count in parted:
        records[RECORD_STATUS_OF_BATCH[batch_status]] -= int(count)
        records[RecordStatus(str(record_status))] += int(count)
    by_batch = GaugeMetricFamily("appendq_batches", "Batches by status", labels=["status"])
    for batch_status, count in batches.items():
        by_batch.add_metric([batch_status.value], count)
    by_record = GaugeMetricFamily(
        "appendq_records", "Records in the audit by status", labels=["status"]
    )
    for record_status, count in records.items():
        by_record.add_metric([record_status.value], count)
    return [by_batch, by_record]


def _held_targets(session: Session) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "appendq_target_held",
        "1 while a target's records wait with a hold reason (no appendable campaign, a "
        "configuration problem); the reason is in `appendq status`",
        labels=["target"],
    )
    for target, reason in session.execute(select(TargetState.target, TargetState.hold_reason)):
        family.add_metric([target], 0 if reason is None else 1)
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
