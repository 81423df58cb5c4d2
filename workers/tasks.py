"""The drain task: Celery's edge of the plain ``appendq.drain.tick.drain_once``.

``DrainTask.register`` gives each Celery app (``workers.celery_app.create_app``) its drain task,
with the Settings that app was built from. The task holds the process's Runtime: built by the
worker_init hook (the solo pool runs the task in the worker process itself), or by the first tick
if no hook ran, and closed by worker_shutdown. The two hooks are connected once, when this module
is imported, and act on the drain task of the app whose worker sends them.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import redis
from celery import Celery, Task
from celery.signals import worker_init, worker_shutdown
from sqlalchemy.exc import SQLAlchemyError

from appendq.db import partitions
from appendq.drain.tick import Drainer, drain_once, take_tick
from appendq.keys import DEFAULT_ACCOUNT
from appendq.queue import depths
from appendq.runtime import Runtime
from appendq.settings import Settings

log = logging.getLogger(__name__)

#: The task beat sends every DRAIN_INTERVAL.
DRAIN_TASK = "appendq.drain"


def run_tick(drainer: Drainer) -> dict[str, Any]:
    """One drain, unless this interval's drain already ran (``take_tick``); its report."""
    if not take_tick(drainer):
        return {"outcome": "skipped", "reason": "this interval's drain already ran"}
    report = {"account": drainer.account, **dataclasses.asdict(drain_once(drainer))}
    _sample_depth(drainer)
    _partitions_ahead(drainer)
    if report["outcome"] not in ("idle", "locked"):
        log.info(
            "tick: %s (account %s)", report["outcome"], drainer.account, extra={"report": report}
        )
    return report


def _sample_depth(drainer: Drainer) -> None:
    """The account's queue depth after this tick, for the console's 24-hour chart; a failure
    here is logged and never fails the tick."""
    try:
        depths.sample(drainer.redis, drainer.keys, drainer.queue.depth(), time.time())
    except redis.RedisError as exc:
        log.warning("queue depth sample not written: %s", type(exc).__name__)


#: How often a worker checks that the daily partitions ahead exist (``ensure_ahead``).
PARTITIONS_CHECK_S = 3600


def _partitions_ahead(drainer: Drainer) -> None:
    """At most once an hour: the daily partitions of the next days (a week ahead), so rows never
    wait in the DEFAULT partition. A failure (a lock not had within 5 s) is logged and tried
    again an hour later; it never fails the tick, and no row is refused meanwhile."""
    try:
        if not drainer.redis.set(drainer.keys.partitions, "1", nx=True, ex=PARTITIONS_CHECK_S):
            return
        with drainer.sessions() as session, session.begin():
            partitions.ensure_ahead(session.connection())
    except (redis.RedisError, SQLAlchemyError) as exc:
        log.warning("daily partitions not checked: %s", type(exc).__name__)


class DrainTask(Task):  # type: ignore[misc]  # Celery has no type hints
    """``appendq.drain``: ``run_tick`` with the process's Runtime."""

    name = DRAIN_TASK
    ignore_result = True

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings
        self._runtime: Runtime | None = None

    @classmethod
    def register(cls, app: Celery, settings: Settings) -> DrainTask:
        """The drain task of ``app``, registered there. Celery binds a task's *class* to its app,
        so each app gets a subclass of its own (as Celery's task decorator makes one)."""
        own = type(cls.__name__, (cls,), {"__module__": cls.__module__})
        task: DrainTask = app.register_task(own(settings))
        return task

    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = Runtime.build(self.settings)
        return self._runtime

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None

    def run(self, account: str = DEFAULT_ACCOUNT) -> dict[str, Any]:
        """One tick of ``account`` (ticks sent before accounts existed name none: default)."""
        runtime = self.runtime()
        if account not in runtime.accounts:
            log.error("tick for unknown account %r: not drained", account[:40])
            return {"outcome": "unknown_account", "account": account[:40]}
        return run_tick(runtime.drainer(account))


def _drain_task(worker: Any) -> DrainTask | None:
    """The drain task of the app whose worker sent a signal (None: another app's worker)."""
    task = worker.app.tasks.get(DRAIN_TASK)
    return task if isinstance(task, DrainTask) else None


@worker_init.connect(weak=False, dispatch_uid="appendq.workers.build_runtime")  # type: ignore[untyped-decorator]
def _build_runtime(sender: Any, **_: Any) -> None:
    task = _drain_task(sender)
    if task is not None:
        task.runtime()


@worker_shutdown.connect(weak=False, dispatch_uid="appendq.workers.close_runtime")  # type: ignore[untyped-decorator]
def _close_runtime(sender: Any, **_: Any) -> None:
    task = _drain_task(sender)
    if task is not None:
        task.close()
