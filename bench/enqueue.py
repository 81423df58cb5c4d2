"""Bulk enqueue through the producer against a naive Celery task per record (``task.delay``),
with and without validation on both sides, in the same run. The producer's own path is
validation (``appendq.records_fast``: one pass and ``appendq.phones`` for the common record, the
full pydantic model and phonenumbers' parse otherwise) + dedupe (Lua HSETNX) + pipelined RPUSH;
the second line shows validation alone, the fast path against the full one it replaces."""

from __future__ import annotations

import time
from typing import Any

import redis
from celery import Celery

from appendq.keys import Keys
from appendq.leads import validate_record
from appendq.queue.record_queue import RecordQueue
from appendq.records_fast import validate_record_fast
from bench.common import REDIS_URL, lead, queued, row, scratch_prefix
from producer import Producer

NAIVE_RECORDS = 3_000  # task.delay is slow: a smaller sample gives its rate just as well


def bench_enqueue(records: int) -> None:
    with scratch_prefix() as prefix:
        client = redis.Redis.from_url(REDIS_URL)
        queue = RecordQueue(client, Keys(prefix))
        raws = [lead(i) for i in range(records)]
        producer_rate = _rate(lambda: Producer(queue).enqueue("service:1001", raws), records)
        validate_rate = _rate(
            lambda: [validate_record_fast(r, i) for i, r in enumerate(raws)], records
        )
        full_rate = _rate(lambda: [validate_record(r, i) for i, r in enumerate(raws)], records)
        ready = queued(records)
        push_rate = _rate(lambda: queue.push("service:1002", ready), records)
        app = _naive_app(prefix)
        task = app.tasks["naive.ingest"]
        sample = raws[:NAIVE_RECORDS]
        naive_rate = _rate(lambda: [task.delay(r) for r in sample], NAIVE_RECORDS)
        naive_validated = _rate(
            lambda: [task.delay(validate_record(r, i)[0]) for i, r in enumerate(sample)],
            NAIVE_RECORDS,
        )
        app.close()
        client.close()
    row(
        "enqueue with validation (records/s)",
        f"{producer_rate:,.0f}",
        f"{naive_validated:,.0f}",
        f"{producer_rate / naive_validated:.0f}x",
    )
    row(
        "  validation alone: fast path vs full (rec/s)",
        f"{validate_rate:,.0f}",
        f"{full_rate:,.0f}",
        f"{validate_rate / full_rate:.1f}x",
    )
    row(
        "enqueue, records already valid (records/s)",
        f"{push_rate:,.0f}",
        f"{naive_rate:,.0f}",
        f"{push_rate / naive_rate:.0f}x",
    )


def _rate(fn: Any, n: int) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def _naive_app(prefix: str) -> Celery:
    app = Celery("naive", broker=REDIS_URL, set_as_current=False)
    app.conf.broker_transport_options = {"global_keyprefix": f"{prefix}:celery:"}
    app.conf.task_default_queue = f"{prefix}.naive"

    @app.task(name="naive.ingest")  # type: ignore[untyped-decorator]
    def ingest(record: dict[str, Any]) -> None:  # never run: only the producer side is measured
        del record

    return app
