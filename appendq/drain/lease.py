"""The drain lease: one drain at a time, for as long as it works, and never a stale one.

A tick holds the drain lock (a redis-py ``Lock``, its token in Redis) for its whole length: a
watchdog thread renews it every third of its TTL, so a tick that reads three long transaction
lists keeps it. A holder that could not renew in time (its process froze, Redis was unreachable
longer than the TTL) has *lost* it: ``check()`` (which asks Redis whether the token is still
ours) raises ``LeaseLost`` at the drain's next step and the drain stops there. Between two
checks, the batch fence (``BatchStore.move(version=...)``) refuses whatever a stale holder still
tries to write, so losing the lease can never send a batch twice, record a late outcome against a
newer send, or put two batches of one target in flight.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType

import redis
from redis.exceptions import LockError, RedisError

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """This drainer no longer holds the drain lock: another one may be draining. Stop."""


class DrainLease:
    def __init__(self, client: redis.Redis, key: str, ttl_s: float) -> None:
        self.ttl_s = max(ttl_s, 1.0)
        # thread_local=False: the watchdog thread renews the token the tick's thread took.
        self._lock = client.lock(key, timeout=self.ttl_s, blocking=False, thread_local=False)
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._watchdog: threading.Thread | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; start renewing it. False when another drain holds it."""
        if not self._lock.acquire(blocking=False):
            return False
        self._watchdog = threading.Thread(target=self._renew, name="drain-lease", daemon=True)
        self._watchdog.start()
        return True

    def _renew(self) -> None:
        renewed = time.monotonic()
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self._lock.reacquire()  # back to a full TTL, only if the token is still ours
                renewed = time.monotonic()
            except LockError as exc:  # the token is not ours any more
                self._lose(exc)
                return
            except RedisError as exc:  # Redis unreachable: try again until the TTL has run out
                if time.monotonic() - renewed >= self.ttl_s:
                    self._lose(exc)
                    return
                log.warning("drain lease not renewed (%s): trying again", type(exc).__name__)

    def _lose(self, exc: Exception) -> None:
        self._lost.set()
        log.error("drain lease lost (%s): this drainer stops at its next step", exc)

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def check(self) -> None:
        """Raise ``LeaseLost`` when the lease has been lost: the caller must stop now. Asks
        Redis (one GET) rather than waiting for the watchdog's next renewal."""
        if not self._lost.is_set():
            try:
                owned = self._lock.owned()
            except RedisError:
                owned = True  # can't tell: the watchdog decides, and the fence still holds
            if not owned:
                self._lost.set()
        if self._lost.is_set():
            raise LeaseLost("the drain lease expired or was taken over")

    def release(self) -> None:
        self._stop.set()
        if self._watchdog is not None:
            self._watchdog.join(timeout=5)
        try:
            self._lock.release()
        except LockError:
            self._lost.set()
            log.warning("drain lease had expired before the tick ended")
        except RedisError as exc:
            log.warning("drain lease not released (%s): it expires on its own", exc)

    def __enter__(self) -> DrainLease:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class NoLease:
    """The lease of a drain run without the lock (direct calls in tests and benchmarks)."""

    lost = False

    def check(self) -> None:
        return None
