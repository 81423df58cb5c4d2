"""Shared fixtures: every test run gets its own PostgreSQL databases and its own Redis key prefix,
against the real services on this machine, and a real HTTP LiveVox simulator.

- The stores: the machine's Redis and PostgreSQL (``APPENDQ_TEST_REDIS``/``APPENDQ_TEST_PG``,
  default 127.0.0.1:6379 and :5432) when they answer (CI), else embedded ones (the ``embedded``
  extra) on free local ports, started once per run and stopped at its end, so that a laptop with
  only Python runs the suite too. ``APPENDQ_TEST_EMBEDDED=1`` forces the embedded ones. The
  header of the run says which; ``redis-server`` from the extra is put on PATH when there is none.

- ``pg_template``: one database per run, migrated once; each test that needs PostgreSQL gets a
  fresh copy (CREATE DATABASE ... TEMPLATE), dropped afterwards.
- ``prefix``: a unique Redis key prefix per test (Celery's keys included), deleted afterwards.
- ``sim``: the simulator serving on an ephemeral port in a thread, reset for each test.
- ``FAST_MODULES``: which tests make the fast lane (marked ``fast``).

And what many tests share on top: ``redis_client``/``keys``/``queued`` for the test's Redis keys,
``rt`` (a ``Runtime`` on ``settings``), ``settings_env`` (those settings as ``APPENDQ_*`` for a
command), ``keep_root_logging`` and ``phone``.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from appendq import embedded
from appendq.crypto import new_key
from appendq.db.engine import migrate, psycopg_url
from appendq.db.models import Batch
from appendq.keys import Keys
from appendq.queue.item import QueuedRecord
from appendq.runtime import Runtime
from appendq.settings import Settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(addr: embedded.Address | None) -> bool:
    return addr is None or embedded.listens(addr)  # a socket URL is taken as configured


def _test_stores() -> tuple[str, str]:
    """(PostgreSQL server URL, Redis URL) of this run: the machine's when they answer, else
    embedded ones on free ports. The choice goes into the environment, so that the second import
    of this module (as ``tests.conftest``) and any later one make the same."""
    pg = os.environ.get("APPENDQ_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    rd = os.environ.get("APPENDQ_TEST_REDIS", "redis://127.0.0.1:6379/0")
    force = os.environ.get("APPENDQ_TEST_EMBEDDED") == "1"
    pg_up = not force and _answers(embedded.postgres_address(pg))
    rd_up = not force and _answers(embedded.redis_address(rd))
    if not (pg_up and rd_up):
        state = Path(tempfile.mkdtemp(prefix="appendq-test-stores-"))
        state.chmod(0o755)  # as root, the embedded PostgreSQL runs as nobody, who must enter it
        pg = pg if pg_up else f"postgresql://postgres@127.0.0.1:{_free_port()}/postgres"
        rd = rd if rd_up else f"redis://127.0.0.1:{_free_port()}/0"
        started = embedded.ensure(rd, pg, state)
        atexit.register(shutil.rmtree, state, ignore_errors=True)
        atexit.register(started.stop)  # atexit runs last-registered first: stop, then remove
        os.environ["APPENDQ_TEST_EMBEDDED"] = "started"
    os.environ["APPENDQ_TEST_PG"], os.environ["APPENDQ_TEST_REDIS"] = pg, rd
    kind = {True: "the machine's", False: "embedded"}
    os.environ.setdefault(
        "APPENDQ_TEST_STORES", f"Redis ({kind[rd_up]}) at {rd}, PostgreSQL ({kind[pg_up]}) at {pg}"
    )
    server = embedded.redis_server_binary()
    if shutil.which("redis-server") is None and server is not None:
        os.environ["PATH"] = f"{server.parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return pg, rd


PG_SERVER, REDIS_URL = _test_stores()
#: Fixtures shared by the console's test modules.
pytest_plugins = ["tests.support.console"]
#: One payload key per run (appendq.crypto), for the test process and every command it starts
#: (tests/support/procs.env_for keeps it); a test that wants another sets data_keys itself.
os.environ.setdefault("APPENDQ_DATA_KEYS", new_key())


def pytest_report_header() -> str:
    return f"stores: {os.environ['APPENDQ_TEST_STORES']}"


#: The fast lane (``make test-fast``, ``pytest -m fast``; under a minute): the pure policies'
#: tables and the quick in-process integration tests, on the same real Redis, PostgreSQL and
#: simulator. A test of these modules marked ``slow`` stays out. Everything else (worker and
#: beat processes, crash and fault scenarios, fuzzing, the state machine) runs in ``make test``,
#: which runs every test.
FAST_MODULES = frozenset(
    {
        "test_policies_table.py",
        "test_classify_table.py",
        "test_reconcile_table.py",
        "test_choose_table.py",
        "test_corners_policies.py",
        "test_ratelimit_lua.py",
        "test_dedupe_lua.py",
        "test_chaos_books.py",
        "test_dedupe.py",
        "test_campaigns.py",
        "test_livevox_client.py",
        "test_files_reading.py",
        "test_validation_records.py",
        "test_producer.py",
        "test_simulator.py",
        "test_audit.py",
        "test_operator_race.py",
        "test_policies.py",
        "test_drain.py",
        "test_metrics.py",
        "test_intake.py",
        "test_enqueue_cli.py",
        "test_dry_run.py",
        "test_infra.py",
        "test_lifecycle.py",
        "test_drain_policies.py",
        "test_shape.py",
        "test_roles.py",
        "test_access_log.py",
        "test_accounts.py",
        "test_accounts_drain.py",
        "test_intake_accounts.py",
        "test_console.py",
        "test_console_actions.py",
        "test_records_fastpath.py",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in FAST_MODULES and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.fast)


RUN_ID = uuid.uuid4().hex[:8]


def _admin() -> Any:
    return create_engine(psycopg_url(PG_SERVER), poolclass=NullPool, isolation_level="AUTOCOMMIT")


def _db_url(name: str) -> str:
    return make_url(PG_SERVER).set(database=name).render_as_string(hide_password=False)


def _drop(name: str) -> None:
    engine = _admin()
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    name = f"appendq_test_{RUN_ID}_tmpl"
    engine = _admin()
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    migrate(_db_url(name))
    yield name
    _drop(name)


@pytest.fixture
def database_url(pg_template: str) -> Iterator[str]:
    name = f"appendq_test_{RUN_ID}_{uuid.uuid4().hex[:8]}"
    engine = _admin()
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    engine.dispose()
    yield _db_url(name)
    _drop(name)


@pytest.fixture
def prefix() -> Iterator[str]:
    value = f"appendq-test-{RUN_ID}-{uuid.uuid4().hex[:8]}"
    yield value
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{value}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    client.close()


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def keys(prefix: str) -> Keys:
    """Keys under the test's own prefix (``prefix`` deletes them afterwards)."""
    return Keys(prefix)


def queued(client: redis.Redis, keys: Keys, target: str = "service:1001") -> list[QueuedRecord]:
    """The records waiting in ``target``'s queue, oldest first."""
    return [QueuedRecord.loads(raw) for raw in client.lrange(keys.queue(target), 0, -1)]


def phone(i: int) -> str:
    """The i-th of 80,000 distinct valid US numbers (212-200-0000 upwards)."""
    return f"212{200 + i // 10_000:03d}{i % 10_000:04d}"


@pytest.fixture
def keep_root_logging() -> Iterator[None]:
    """For commands that configure logging (onto click's runner's stderr): put the root logger
    back afterwards. Modules that run such commands use it with ``pytest.mark.usefixtures``."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@dataclass
class Sim:
    url: str
    admin: httpx.Client

    def reset(self, **config: Any) -> None:
        self.admin.post("/_admin/reset", json=config).raise_for_status()

    def calls(self, kind: str | None = None) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = self.admin.get("/_admin/calls").json()
        return [c for c in calls if kind is None or c["kind"] == kind]

    def records(self, campaign_id: int) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.admin.get(
            f"/_admin/campaigns/{campaign_id}/records"
        ).json()
        return result

    def fault(self, kind: str, fault: dict[str, Any], times: int = 1) -> None:
        self.admin.post(
            "/_admin/faults", json={"kind": kind, "fault": fault, "times": times}
        ).raise_for_status()

    def dialect(self, **fields: Any) -> dict[str, Any]:
        """Play a LiveVox dialect (appendq.simulator.dialect): the fields given (``preset="java"``
        first, if given) over the current dialect; the reset before each test restores the
        default. Returns the full dialect."""
        answer = self.admin.post("/_admin/dialect", json=fields)
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def patch_campaign(self, campaign_id: int, **changes: Any) -> None:
        self.admin.patch(f"/_admin/campaigns/{campaign_id}", json=changes).raise_for_status()

    def create_campaign(self, **campaign: Any) -> None:
        self.admin.post("/_admin/campaigns", json=campaign).raise_for_status()

    def create_second_campaign(self) -> None:
        """Campaign 5002 "Sales 2" of service 1001: today's, Playing and appendable (for when
        the first, 5001, was stopped)."""
        self.create_campaign(
            id=5002,
            serviceId=1001,
            name="Sales 2",
            typeId=1,
            status="PLAYING",
            allowAppend=True,
            day="today",
        )


@pytest.fixture(scope="session")
def sim_server() -> Iterator[str]:
    from appendq.simulator.server import start_in_thread
    from appendq.simulator.state import SimulatorState

    server, url = start_in_thread(SimulatorState(), "127.0.0.1", 0)
    yield url
    server.shutdown()


@pytest.fixture
def sim(sim_server: str) -> Iterator[Sim]:
    with httpx.Client(base_url=sim_server, timeout=10) as admin:
        handle = Sim(sim_server, admin)
        handle.reset()
        yield handle


def make_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "redis_url": REDIS_URL,
        "rate_window_s": 3.0,
        "rate_margin_s": 0.2,
        "drain_interval_s": 0.5,
        "campaign_cache_s": 0.0,
        "livevox_read_timeout_s": 5.0,
        "retry_base_s": 0.0,
        "retry_cap_s": 0.0,
    }
    base.update(overrides)
    return Settings(**base)


@pytest.fixture
def settings(database_url: str, prefix: str, sim: Sim, tmp_path: Any) -> Settings:
    return make_settings(
        database_url=database_url,
        redis_prefix=prefix,
        livevox_base_url=sim.url,
        state_dir=str(tmp_path / "state"),
    )


@pytest.fixture
def rt(settings: Settings) -> Iterator[Runtime]:
    runtime = Runtime.build(settings)
    yield runtime
    runtime.close()


def batches(rt: Runtime) -> list[Batch]:
    """Every batch in PostgreSQL, by id."""
    with rt.sessions() as session:
        return list(session.scalars(select(Batch).order_by(Batch.id)))


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """``settings``' stores and LiveVox as ``APPENDQ_*`` variables for a command, plus ``extra``."""
    return {
        "APPENDQ_DATABASE_URL": settings.database_url,
        "APPENDQ_REDIS_URL": settings.redis_url,
        "APPENDQ_REDIS_PREFIX": settings.redis_prefix,
        "APPENDQ_LIVEVOX_BASE_URL": settings.livevox_base_url,
        **extra,
    }
