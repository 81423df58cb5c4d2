"""The Celery app, built from Settings by the entry point (never at import time).

- beat schedules ``appendq.drain`` every DRAIN_INTERVAL with ``expires`` shorter than the interval;
- the worker runs the solo pool (concurrency 1, prefetch 1): one drain at a time in one process,
  and a kill -9 of that process is a kill of the drain;
- Celery's keys in Redis share the appendq prefix (``global_keyprefix``), so several deployments or
  test runs can share one Redis.
"""

from __future__ import annotations

from pathlib import Path

from celery import Celery

from appendq.settings import Settings

DRAIN_TASK = "appendq.drain"


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
                "options": {"expires": max(interval * 0.9, 0.05)},
            }
        },
    )
    app.appendq_settings = settings
    from workers import tasks

    tasks.register(app)
    return app
