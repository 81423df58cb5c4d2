"""The one polling helper of the tests and benchmarks: wait until a condition holds, or fail
saying what was awaited (and, with ``explain``, what the system looked like then)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = 0.1,
    *,
    explain: Callable[[], str] | None = None,
) -> None:
    """Call ``predicate`` every ``interval`` s until it is true; an AssertionError naming
    ``what`` (followed by ``explain()``, e.g. the tails of process logs) after ``timeout`` s.
    The predicate may act as well as look (e.g. run a drain tick and then look)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            detail = explain() if explain is not None else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{detail}")
        time.sleep(interval)
