"""The faults of issue 8 that a chaos trial plays against its own workers (``Races``, mixed into
``bench.chaos.Trial``): a worker frozen past its drain lease (while a drain holds the lock, with
an Append in flight, or stopped at a step of the drain) and an operator confirming a retry while
ticks run."""

from __future__ import annotations

import redis
from sqlalchemy import text
from sqlalchemy.orm import Session

from appendq.db.models import BatchStatus
from appendq.keys import Keys
from appendq.ops.retry import BatchSummary, RetryFilter, preview_retry, retry
from bench.chaos_plan import (
    STOP_POINTS,
    lease_ttl_s,
)
from bench.chaos_procs import Worker, Workers

RETRYABLE = (BatchStatus.HELD, BatchStatus.OPERATOR_HOLD, BatchStatus.IN_DOUBT, BatchStatus.FAILED)
#: How long an armed freeze waits for a drain to hold the lock before freezing anyway.
FREEZE_WAIT_S = 2.0
#: How long a worker armed to stop itself at a drain step may take to reach it.
POINT_WAIT_S = 8.0


class Races:
    """Freezes and operator races (a mixin of ``bench.chaos.Trial``, whose state it uses)."""

    # -- freeze: the drain lease expires under a frozen worker ------------------------------------

    def _arm_freeze(self, freeze: tuple[float, str], workers: Workers) -> None:
        """From now on, freeze a worker as soon as a drain holds the lock ("lock"), as soon as
        an Append stalled for it is in flight ("mid-call"), or start a worker that stops itself
        at that step of the drain (a STOP_POINT); a standby drains meanwhile (started if
        needed: it boots while the victim still holds the lock)."""
        extra_s, mode = freeze
        if mode in STOP_POINTS:  # the victim starts once some batch was appended (below)
            self.point_freeze = (self._now(), extra_s, mode, None)
            return
        if mode == "mid-call":
            stall = round(self.fence.read_timeout_s * 0.8, 2)
            self._push_fault({"stall_s": stall, "apply": True}, 1)
        self.freeze_armed = (self._now(), extra_s, mode == "mid-call", self._standby(workers))

    def _standby(self, workers: Workers, besides: Worker | None = None) -> Worker | None:
        """A worker started to drain while the victim is frozen, unless one is awake already."""
        if len([w for w in workers.awake if w is not besides]) >= (1 if besides else 2):
            return None
        self.books.figures["freeze: standby workers started"] += 1
        return workers.start()

    def _try_freeze(self, workers: Workers) -> None:
        self._watch_point_freeze(workers)
        if self.freeze_armed is None:
            return
        armed_at, extra_s, mid_call, standby = self.freeze_armed
        ready = self._stalled_call() if mid_call else self._lock_held()
        if not ready and self._now() - armed_at < FREEZE_WAIT_S * (2 if mid_call else 1):
            return
        if len(workers.awake) < 2:  # the victim or the standby died meanwhile: arm again
            self.freeze_armed = (self._now(), extra_s, False, self._standby(workers))
            return
        self.freeze_armed = None
        victim = self.fence_rng.choice([w for w in workers.awake if w is not standby])
        workers.freeze(victim)
        f = self.books.figures
        f["freeze: frozen while a drain held the lock"] += self._lock_held()
        f["freeze: frozen with an Append in flight"] += mid_call and ready
        self._frozen(victim, extra_s)

    def _frozen(self, victim: Worker, extra_s: float) -> None:
        self.books.figures["freeze: workers frozen past the lease TTL"] += 1
        self._later(self._now() + lease_ttl_s(self.settings) + extra_s, "thaw", victim)

    def _watch_point_freeze(self, workers: Workers) -> None:
        """A freeze at a drain step. Once a batch was appended (so that reconciliation can
        conclude "nothing landed" while the victim is frozen), start the victim, which stops
        itself at the step, and a standby; once it stopped, thaw it later. If it died or did not
        reach its step within POINT_WAIT_S, give up."""
        if self.point_freeze is None:
            return
        armed_at, extra_s, mode, victim = self.point_freeze
        f = self.books.figures
        if victim is None:
            if self._appended_once():
                victim = workers.start(stop_at=mode)
                self._standby(workers, besides=victim)
                self.point_freeze = (self._now(), extra_s, mode, victim)
        elif victim.stopped():
            self.point_freeze = None
            victim.frozen = True
            f[f"freeze: stopped itself {mode}"] += 1
            self._frozen(victim, extra_s)
            return
        if self.point_freeze and (
            (victim is not None and victim not in workers.running)
            or self._now() - armed_at > POINT_WAIT_S
        ):
            self.point_freeze = None
            f["freeze: never reached its step"] += 1

    def _appended_once(self) -> bool:
        with self.world.engine.connect() as conn:
            return bool(
                conn.scalar(text("SELECT 1 FROM batches WHERE status = 'appended' LIMIT 1"))
            )

    def _stalled_call(self) -> bool:
        """An Append call with a stall fault is in flight (not answered yet)."""
        calls = self.world.sim.get("/_admin/calls").json()
        return any(
            c["kind"] == "append" and c["status"] is None and (c.get("fault") or {}).get("stall_s")
            for c in calls[-50:]
        )

    def _lock_held(self) -> bool:
        client = self._redis()
        try:
            return bool(client.exists(Keys(self.prefix).drain_lock))
        except redis.RedisError:
            return False
        finally:
            client.close()

    # -- operator: preview, a wait while ticks run, confirmation ----------------------------------

    def _operator_preview(self) -> None:
        """The next due operator previews the retryable batches; if any, it confirms after its
        wait (an event, so ticks run meanwhile)."""
        if not self.operator_due:
            return
        with Session(self.world.engine) as session:
            shown = preview_retry(session, RetryFilter(statuses=RETRYABLE))
        if not shown:
            return
        race = self.operator_due.pop(0)
        f = self.books.figures
        f["operator: previews"] += 1
        f["operator: batches previewed"] += len(shown)
        self._later(self._now() + race.wait_s, "confirm", (shown,))

    def _operator_confirm(self, shown: list[BatchSummary]) -> None:
        """Retry exactly what the preview showed, as it showed it. The records of a moved batch
        that the preview warned about (may send twice) are the only allowed duplicates."""
        f = self.books.figures
        with Session(self.world.engine) as session, session.begin():
            result = retry(
                session,
                RetryFilter(statuses=RETRYABLE),
                reason="chaos: operator confirms the previewed batches",
                actor="operator:chaos",
                only={b.id: b.seen() for b in shown},
            )
            warned = {b.id: b.status for b in result.moved if b.may_duplicate}
            rows = session.execute(
                text(
                    "SELECT id::text, batch_id FROM records"
                    " WHERE batch_id = ANY(:b) AND status IS NULL"
                ),
                {"b": list(warned)},
            ).all()
        for rid, batch_id in rows:
            self.resent.setdefault(rid, []).append(warned[batch_id])
        f["operator: batches moved"] += len(result.moved)
        for moved in result.moved:
            f[f"operator: moved from {moved.status}"] += 1
        f["operator: batches left alone (changed since the preview)"] += len(result.left)
