"""The Celery app, built from Settings by the entry point (never at import time).

- beat schedules the task ``appendq.drain`` (``workers.tasks.DrainTask``) every DRAIN_INTERVAL.
  At most one drain runs per interval, whatever the number of beats or of ticks that piled up
  while the workers were down: the task takes a Redis key with a TTL
  (``appendq.drain.tick.take_tick``), timed by Redis's clock. Celery's own ``expires`` is
  compared with the *worker's* clock, so a worker 30 s ahead would drop every tick if it were
  shorter than the interval; it is kept long (10 intervals, at least 5 min) only to bound how
  many stale ticks a long outage leaves in the queue;
- the worker runs the solo pool (concurrency 1, prefetch 1): one drain at a time in one process,
  and a kill -9 of that process is a kill of the drain;
- Celery's keys in Redis share the appendq prefix (``global_keyprefix``), so several deployments or
  test runs can share one Redis.
"""

from __future__ import annotations

from pathlib import Path

from celery import Celery

from appendq.settings import Settings
from workers.tasks import DRAIN_TASK, DrainTask


def create_app(settings: Settings) -> Celery:
    app = Celery("appendq", broker=settings.redis_url, set_as_current=True)
    state = Path(settings.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    interval = settings.drain_interval_s
    app.conf.update(
        broker_connection_retry_on_startup=True,
        broker_transport_options={"global_keyprefix": f"{settings.redis_prefix}:celery:"},
        task_default_queue=f"{settings.redis_prefix}.ticks",
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        worker_pool="solo",
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        beat_schedule_filename=str(state / f"beat-{settings.redis_prefix}"),
        beat_max_loop_interval=max(min(interval, 5.0), 0.1),
        beat_schedule={
            "drain": {
                "task": DRAIN_TASK,
                "schedule": interval,
                "options": {"expires": max(interval * 10, 300.0)},
            }
        },
    )
    DrainTask.register(app, settings)
    return app
