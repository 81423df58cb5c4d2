"""Fault-injection points for crash tests: ``APPENDQ_CRASH_AT=<point>`` makes the process kill
itself with SIGKILL when it reaches that point (no cleanup, exactly like kill -9). Off unless the
variable is set; the points are named where they stand in the drain."""

from __future__ import annotations

import os
import signal

POINTS = ("after_claim", "after_persist", "after_sending", "after_append")


def crashpoint(name: str) -> None:
    if os.environ.get("APPENDQ_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
