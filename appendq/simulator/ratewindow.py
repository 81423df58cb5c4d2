"""LiveVox's rolling rate window for the Append call, one per client.

LiveVox allows each client (account) ``rate_max_calls`` Append calls per rolling
``rate_window_s``; the simulator keeps the times of each client's recent calls. Every Append
takes a slot, refused or faulted ones included, under the client of its session; an Append
without a valid session goes to a window of its own (client None), so that it takes nobody's
slot. Not thread-safe by itself: :class:`appendq.simulator.state.SimulatorState` holds the lock.
"""

from __future__ import annotations

from collections import deque


class RateWindows:
    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._calls: dict[str | None, deque[float]] = {}

    def add(self, client: str | None, now: float) -> int:
        """Count a call of ``client`` at ``now``; the client's calls in the window, this one
        included."""
        calls = self._calls.setdefault(client, deque())
        self._prune(calls, now)
        calls.append(now)
        return len(calls)

    def counts(self, now: float) -> dict[str | None, int]:
        """The calls in the window of each client that made any (None: without a session)."""
        for calls in self._calls.values():
            self._prune(calls, now)
        return {client: len(calls) for client, calls in self._calls.items() if calls}

    def _prune(self, calls: deque[float], now: float) -> None:
        while calls and calls[0] <= now - self.window_s:
            calls.popleft()
