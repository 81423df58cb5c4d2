"""What a ``make chaos`` run shares (``World``: the scratch database, the simulator, the dedicated
Redis) and how a trial ends (``Settling``, mixed into ``bench.chaos.Trial``): faults cleared, one
clean worker until nothing is open (bounded), then the books counted and the trial's keys
forgotten."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from appendq.db.engine import psycopg_url
from appendq.keys import Keys
from bench.chaos_books import Row, Seen, count
from bench.chaos_plan import (
    CAMPAIGN,
    MAX_CALLS,
    PINNED,
    TARGET,
    WINDOW_S,
)
from bench.chaos_procs import Workers
from bench.common import scratch_database, scratch_simulator
from tests.support.procs import RedisServer

OPEN = ["ready", "retry_wait", "sending", "in_doubt"]
SETTLE_S = 40.0


@dataclass
class World:
    """What the whole run shares: the database, the simulator and the dedicated Redis."""

    database_url: str
    engine: Engine
    sim: httpx.Client
    sim_url: str
    redis: RedisServer
    run_dir: Path


@contextmanager
def world() -> Iterator[World]:
    run_dir = Path(tempfile.mkdtemp(prefix="appendq-chaos-"))
    server = RedisServer(run_dir / "redis")
    server.start()
    try:
        with (
            scratch_database() as database_url,
            scratch_simulator("--rate-window-s", str(WINDOW_S)) as sim_url,
            httpx.Client(base_url=sim_url, timeout=30) as sim,
        ):
            engine = create_engine(psycopg_url(database_url), poolclass=NullPool)
            try:
                yield World(database_url, engine, sim, sim_url, server, run_dir)
            finally:
                engine.dispose()
    finally:
        server.kill9()


class Settling:
    """The end of a trial (a mixin of ``bench.chaos.Trial``, whose state it reads)."""

    def _settle(self, workers: Workers) -> bool:
        """Clear the faults, leave one clean worker, and wait until nothing is open."""
        self.world.sim.delete("/_admin/faults").raise_for_status()
        for worker in list(workers.running):
            workers.thaw(worker)  # none should be left frozen; be sure
            if worker.crash_at:
                workers.kill9(worker)
                workers.killed -= 1  # not chaos: the settle phase wants no crash point
        workers.reap()
        if not workers.running:
            workers.start()
        deadline = time.monotonic() + SETTLE_S
        quiet = 0
        while time.monotonic() < deadline:
            if workers.reap() or not workers.running:
                workers.start()
            quiet = quiet + 1 if self._nothing_open() else 0
            if quiet >= 3:
                return True
            time.sleep(0.2)
        return False

    def _redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.world.redis.url, socket_timeout=5)

    def _queued_ids(self) -> set[str]:
        """Record ids still queued or claimed, of every target of the trial."""
        keys = Keys(self.prefix)
        client = self._redis()
        try:
            items = []
            for target in (TARGET, PINNED):
                items += client.lrange(keys.queue(target), 0, -1)
                items += client.lrange(keys.inflight(target), 0, -1)
        finally:
            client.close()
        return {json.loads(item)["id"] for item in items}

    def _nothing_open(self) -> bool:
        with self.world.engine.connect() as conn:
            open_batches = conn.scalar(
                text("SELECT count(*) FROM batches WHERE status = ANY(:s)"), {"s": OPEN}
            )
        return not open_batches and not self._queued_ids()

    def _rows(self) -> dict[str, Row]:
        with self.world.engine.connect() as conn:
            rows = {
                rid: Row(status, bool(hold))
                for rid, status, hold in conn.execute(
                    text(
                        "SELECT r.id::text, coalesce(r.status::text, CASE b.status"
                        " WHEN 'operator_hold' THEN 'held' ELSE b.status::text END),"
                        " r.status IS NULL AND b.status = 'operator_hold'"
                        " FROM records r JOIN batches b ON b.id = r.batch_id"
                    )
                )
            }
            for to, n in conn.execute(
                text(
                    "SELECT to_status, count(*) FROM events"
                    " WHERE from_status = 'sending' GROUP BY to_status"
                )
            ):
                self.books.figures[f"batch sending -> {to}"] += n
        return rows

    def _count(self, settled: bool) -> None:
        sim = self.world.sim
        seen = Seen(
            accepted=self.accepted,
            rows=self._rows(),
            queued=self._queued_ids(),
            at_sim=sim.get(f"/_admin/campaigns/{CAMPAIGN}/records").json(),
            calls=sim.get("/_admin/calls").json(),
            resent=self.resent,
        )
        count(
            self.books,
            seen,
            window_s=WINDOW_S,
            max_calls=MAX_CALLS,
            rate_status=self.dialect.rate_limit_status,
        )
        if not settled:
            self.books.anomalies.append("did not settle")

    def _forget_keys(self) -> None:
        client = self._redis()
        try:
            keys = list(client.scan_iter(match=f"{self.prefix}:*", count=1000))
            for i in range(0, len(keys), 500):
                client.delete(*keys[i : i + 500])
        finally:
            client.close()
