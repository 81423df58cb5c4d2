"""The tick task: builds nothing itself, calls the plain ``drain_once`` with the process's runtime.

The runtime is built by Celery's per-process hooks (worker_init for the solo pool) and closed at
shutdown.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_shutdown

from appendq.drain import DrainReport, drain_once, take_tick
from appendq.runtime import Runtime
from appendq.settings import Settings
from workers.celery_app import DRAIN_TASK

log = logging.getLogger(__name__)

_runtime: Runtime | None = None


def _settings(app: Celery) -> Settings:
    settings: Settings = app.appendq_settings
    return settings


def runtime(app: Celery) -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = Runtime.build(_settings(app))
    return _runtime


def register(app: Celery) -> None:
    @app.task(name=DRAIN_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
    def drain() -> dict[str, Any]:
        drainer = runtime(app).drainer()
        if not take_tick(drainer):
            return {"outcome": "skipped", "reason": "this interval's drain already ran"}
        report: DrainReport = drain_once(drainer)
        if report.outcome not in ("idle", "locked"):
            log.info("tick: %s", report.outcome, extra={"report": report.__dict__})
        return report.__dict__

    @worker_init.connect(weak=False)  # type: ignore[untyped-decorator]
    def _build(**_: Any) -> None:
        runtime(app)

    @worker_shutdown.connect(weak=False)  # type: ignore[untyped-decorator]
    def _close(**_: Any) -> None:
        global _runtime
        if _runtime is not None:
            _runtime.close()
            _runtime = None
