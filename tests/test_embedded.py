"""Issue 15: ``appendq up`` with nothing but Python. Where the configured Redis/PostgreSQL URL is
local and nothing listens, ``up`` starts embedded ones there (data under APPENDQ_STATE_DIR), every
other command reaches them at the same URL, Ctrl-C stops everything, and the data stays; a
non-local URL that does not answer is an error. Real processes throughout."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from appendq import embedded
from appendq.runtime import Runtime
from tests.support.procs import ROOT, free_port, process, run_cli, wait_until

EXAMPLE = ROOT / "examples" / "leads.csv"
PHONES = ["(212) 555-1000", "(212) 555-1019"]  # the example file's first and last phone1


def _proc_tree(root: int) -> set[tuple[int, str]]:
    """``root`` and its descendants now, as (pid, start time) read from /proc."""
    parents: dict[int, list[tuple[int, str]]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        parents.setdefault(int(fields[1]), []).append((pid, fields[19]))
    tree, todo = set(), [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            tree.add(child)
            todo.append(child[0])
    return tree


def _alive(pid: int, started: str) -> bool:
    """Running (not a zombie awaiting init) and the same process (same start time)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[19] == started and fields[0] != "Z"


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: as root the embedded PostgreSQL runs as nobody, who must
    # be able to enter every directory above its data (pytest's are 0700).
    path = Path(tempfile.mkdtemp(prefix="appendq-embedded-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _up_env(state: Path, redis_port: int, pg_port: int, sim_port: int) -> dict[str, str]:
    return {
        "APPENDQ_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "APPENDQ_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{pg_port}/appendq",
        "APPENDQ_LIVEVOX_BASE_URL": f"http://127.0.0.1:{sim_port}",
        "APPENDQ_STATE_DIR": str(state),
        "APPENDQ_DRAIN_INTERVAL_S": "0.5",
        "APPENDQ_CAMPAIGN_CACHE_S": "0",
    }


def _wait_up(env: dict[str, str], proc: subprocess.Popen[bytes], log: Path) -> None:
    sim = env["APPENDQ_LIVEVOX_BASE_URL"]

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"appendq up exited {proc.returncode}:\n{log.read_text()}")
        try:
            return httpx.get(f"{sim}/_admin/state", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, 40, "appendq up to start the stores and the simulator", interval=0.2)


def _ctrl_c(proc: subprocess.Popen[bytes]) -> None:
    """What a terminal's Ctrl-C does: SIGINT to the whole foreground process group."""
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(30)


def _sigterm(proc: subprocess.Popen[bytes]) -> None:
    """What a process supervisor does: SIGTERM to that one process."""
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


@pytest.mark.slow
def test_up_runs_on_embedded_stores_stops_clean_and_keeps_the_data(state_dir: Path) -> None:
    # Given local Redis, PostgreSQL and LiveVox URLs where nothing listens, When `appendq up`
    # runs, the example file is enqueued and up gets Ctrl-C, then up runs again (and gets a
    # SIGTERM), Then the simulator up started holds the 20 leads, no process up started is left
    # either time and the ports are free, and the second up answers `appendq audit` with them
    # appended and takes none of the file again (PostgreSQL's and Redis's data kept).
    ports = [free_port() for _ in range(3)]
    env = _up_env(state_dir, *ports)
    stores = [embedded.Address("127.0.0.1", p) for p in ports[:2]]
    assert not any(embedded.listens(a) for a in stores)
    log = state_dir / "up-1.log"
    got, tree, returncode = _up_takes_the_example_then_ctrl_c(env, log)
    text_log = log.read_text()
    assert returncode == 0, text_log
    assert sorted(str(r["account"]) for r in got) == [f"DEMO{i:04d}" for i in range(20)]
    assert "Redis: nothing listened at 127.0.0.1:" in text_log
    assert "PostgreSQL: nothing listened at 127.0.0.1:" in text_log
    assert len(tree) >= 4, tree  # redis-server, postgres (+ its workers), simulator, beat
    assert [p for p in tree if _alive(*p)] == []
    assert not any(embedded.listens(a) for a in stores)
    assert not (state_dir / "postgres" / "data" / "postmaster.pid").exists()  # clean shutdown
    log2 = state_dir / "up-2.log"
    tree2, returncode = _up_again_audits_the_example_then_sigterm(env, log2)
    assert returncode == 0, log2.read_text()
    assert [p for p in tree2 if _alive(*p)] == []
    assert not any(embedded.listens(a) for a in stores)


def _up_takes_the_example_then_ctrl_c(
    env: dict[str, str], log: Path
) -> tuple[list[dict[str, object]], set[tuple[int, str]], int | None]:
    """`appendq up`; enqueue the example file; wait for its 20 leads at the simulator; Ctrl-C.
    The leads, the processes up had started, and up's exit status."""
    with process(["up"], env, log) as up:
        _wait_up(env, up, log)
        enqueued = json.loads(
            run_cli(["enqueue", str(EXAMPLE), "--service", "1001", "--json"], env).stdout
        )
        assert enqueued["accepted"] == 20
        admin = httpx.Client(base_url=env["APPENDQ_LIVEVOX_BASE_URL"], timeout=10)
        got: list[dict[str, object]] = []

        def appended() -> bool:
            got[:] = admin.get("/_admin/campaigns/5001/records").json()
            return len(got) >= 20

        wait_until(appended, 30, "the 20 example leads at the simulator", interval=0.3)
        tree = _proc_tree(up.pid)
        _ctrl_c(up)
    return got, tree, up.returncode


def _up_again_audits_the_example_then_sigterm(
    env: dict[str, str], log: Path
) -> tuple[set[tuple[int, str]], int | None]:
    """`appendq up` again: the audit shows each example lead appended, enqueuing the file again
    takes none; then SIGTERM. The processes up had started, and up's exit status."""
    with process(["up"], env, log) as up:
        _wait_up(env, up, log)
        for phone in PHONES:
            doc = json.loads(run_cli(["audit", "--phone", phone, "--json"], env).stdout)
            assert [f["status"] for f in doc["records"]] == ["appended"], doc
        again = json.loads(
            run_cli(["enqueue", str(EXAMPLE), "--service", "1001", "--json"], env).stdout
        )
        assert again["accepted"] == 0
        tree = _proc_tree(up.pid)
        _sigterm(up)
    return tree, up.returncode


def test_up_refuses_a_non_local_store_that_does_not_answer(state_dir: Path) -> None:
    # Given APPENDQ_REDIS_URL at 127.0.0.2 (loopback, but not one of the local-default hosts)
    # where nothing listens, When `appendq up` runs, Then it exits with an error naming that
    # address, and starts nothing: no embedded Redis, no data directory.
    env = _up_env(state_dir, free_port(), free_port(), free_port())
    port = free_port()
    env["APPENDQ_REDIS_URL"] = f"redis://127.0.0.2:{port}/0"
    result = run_cli(["up"], env, check=False, timeout=60)
    assert result.returncode != 0
    assert f"Redis does not answer at redis://127.0.0.2:{port}/0" in result.stderr
    assert "not a local address" in result.stderr
    assert not (state_dir / "redis").exists() and not (state_dir / "postgres").exists()


def test_fixtures_reach_the_run_stores(rt: Runtime) -> None:
    # Given the run's stores (the machine's, or embedded ones when it has none), When a test
    # uses the fixtures, Then Redis takes a write and PostgreSQL serves its migrated database.
    rt.redis.set(rt.keys.queue("probe"), b"1")
    assert rt.redis.get(rt.keys.queue("probe")) == b"1"
    with rt.engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM batches")) == 0


@pytest.mark.slow
def test_suite_falls_back_to_embedded_stores(state_dir: Path) -> None:
    # Given APPENDQ_TEST_PG/APPENDQ_TEST_REDIS at local ports where nothing listens (a laptop
    # without the services), When pytest runs a test that needs both, Then the run says it uses
    # embedded stores, the test passes against them, and they are stopped after the run.
    pg_port, redis_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPENDQ_")}
    env["APPENDQ_TEST_PG"] = f"postgresql://postgres@127.0.0.1:{pg_port}/postgres"
    env["APPENDQ_TEST_REDIS"] = f"redis://127.0.0.1:{redis_port}/0"
    target = "tests/test_embedded.py::test_fixtures_reach_the_run_stores"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", target, "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stores: Redis (embedded) at redis://127.0.0.1:" in done.stdout
    assert "PostgreSQL (embedded) at postgresql://postgres@127.0.0.1:" in done.stdout
    assert "1 passed" in done.stdout
    started = _ports_in(done.stdout)
    assert len(started) == 2 and {a.port for a in started}.isdisjoint({pg_port, redis_port})
    assert not any(embedded.listens(a) for a in started), "the run's embedded stores outlived it"


def _ports_in(header: str) -> list[embedded.Address]:
    line = next(ln for ln in header.splitlines() if ln.startswith("stores: "))
    urls = [w.rstrip(",") for w in line.split() if "://" in w]
    return [a for a in (embedded.address(u, 0) for u in urls) if a is not None]
