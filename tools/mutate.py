"""``make mutate``: mutation testing of the policies (issue #10), against the fast lane's tests.

Each mutant is one small change to one policy: a comparison (``<`` to ``<=``, ``==`` to ``!=``,
``in`` to ``not in`` ...), an arithmetic operator, ``and``/``or``, a dropped ``not``, a number
(n to n+1, 1 to 0), ``True``/``False``, a ``return`` of None, an ``if`` whose branch is never
taken, a ``raise`` that does not; and in the Lua scripts (rate limiter, dedupe): ``<``/``<=``/
``>``/``>=``/``==``/``~=``, ``+``/``-``, ``*``/``/``, ``and``/``or`` and numbers. Each is run
against its module's tests (``MODULES``); a test that fails kills it.

Nothing is ever mutated in the working tree: the project is copied to a temporary directory and
each mutant is written there, run, and the file put back (``finally``) before the next one; the
copy is deleted at the end. The tests run in a child forked from a process that has already
imported the third-party libraries (seconds per mutant, not tens), with a redis-server of the
run's own (a mutated Lua script never reaches the machine's Redis).

    python tools/mutate.py [--module NAME ...] [--threshold 90] [--list] [--verbose]

Prints killed / survived / timed out per module and each survivor; exits 1 when the share of
non-equivalent mutants killed is below the threshold. ``EQUIVALENT`` lists the mutants examined
and found to change no observable behaviour, with the reason; they are not counted.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tools.mutation_ops, tests.support.procs (the run's redis-server)

from tools.mutation_ops import Mutant, Site, Source, lua_mutants, python_mutants  # noqa: E402


@dataclass(frozen=True)
class Module:
    name: str
    sites: tuple[Site, ...]
    tests: tuple[str, ...]


CLASSIFY = (
    "classify", "_by_meaning", "is_campaign_refusal", "named_in", "canonical_phone",
    "_raw_message", "_error_class", "classify_exception", "clean_message", "error_body",
)  # fmt: skip
RECONCILE = (
    "ListCounts.shown", "read_list", "key_of", "_others", "match", "_shown_by_phone",
    "_ordered", "calibration_shown", "gather", "verdict", "_none_found",
)  # fmt: skip
MODULES = (
    Module(
        "settle",
        (
            Site("appendq/drain/settle.py", ("settle", "in_doubt_wait_s")),
            Site("appendq/errors.py", ("AnswerLost.answered",)),
        ),
        ("tests/test_policies_table.py", "tests/test_corners_policies.py"),
    ),
    Module("backoff", (Site("appendq/drain/backoff.py"),), ("tests/test_policies_table.py",)),
    Module(
        "classify",
        (Site("appendq/livevox/classify.py", CLASSIFY, ("MESSAGE_MAX", "_BY_STATUS")),),
        ("tests/test_classify_table.py", "tests/test_corners_policies.py"),
    ),
    Module(
        "reconcile",
        (Site("appendq/drain/reconcile.py", RECONCILE),),
        ("tests/test_reconcile_table.py", "tests/test_corners_policies.py"),
    ),
    Module(
        "ratelimit",
        (Site("appendq/livevox/ratelimit.py", None, (), ("_ACQUIRE", "_STAMP", "_PAUSE")),),
        ("tests/test_ratelimit_lua.py",),
    ),
    Module(
        "dedupe",
        (
            Site("appendq/queue/dedupe.py", None, ("TTL_S",)),
            Site(
                "appendq/queue/record_queue.py",
                ("_dedupe_args", "RecordQueue.push_deduped", "RecordQueue.release_reservations"),
                (),
                ("_PUSH_DEDUPED", "_RELEASE"),
            ),
        ),
        # test_dedupe.py without its two drain scenarios (PostgreSQL and the simulator)
        ("tests/test_dedupe_lua.py", "tests/test_dedupe.py", "-k", "not never_sent and not close"),
    ),
)

#: Mutants examined and found equivalent: "path::scope: change" -> why no test can tell.
RL, RQ = "appendq/livevox/ratelimit.py::", "appendq/queue/record_queue.py::"
SUB_MS = "microseconds to ms: off by under a millisecond, below what Redis's clock can show"
BOOL = "the script's 'granted' is read as bool(): 1 and 2 are both true"
EXPIRY = "the key's expiry margin: a second or a millisecond more cannot be told by a TTL read"
EQUIVALENT: dict[str, str] = {
    "appendq/drain/backoff.py::backoff_s: 32 -> (33)": (
        "the exponent's bound only keeps 2**n from overflowing; 2**31 s is 68 years, far past any "
        "cap, so a bound of 32 or 33 gives the same wait for every cap a setting can hold"
    ),
    "appendq/drain/reconcile.py::match: not key[1] -> (False)": (
        "a record without phone1 is missing either way: read_list never counts an entry without "
        "a phone, so the key (account, '') is shown 0 times and _shown_by_phone skips ''"
    ),
    f"{RL}RateLimiter.__init__: 120.0 -> (121.0)": "a default no caller uses (Runtime passes it)",
    f"{RL}RateLimiter.release: slot.granted and slot.member -> (slot.granted or slot.member)": (
        "a refused slot's member was never added: ZREM of it changes nothing"
    ),
    f"{RL}RateLimiter.in_flight: 3000 -> (3001)": "the keeper's period, 1/3000 of the hold or less",
    f"{RL}RateLimiter.in_flight: True -> (False)": "daemon: the keeper is joined in the finally",
    f"{RL}RateLimiter.in_flight: 5 -> (6)": "the join's bound: the keeper stops within one call",
    f"{RL}_ACQUIRE: 1000 -> 1001 in 'h.floor(tonumber(t[2]) / 1000) local max, wi'": SUB_MS,
    f"{RL}_ACQUIRE: > -> >= in 'EYS[2]) or '0') if pause > now then retur'": (
        "differs only in the one millisecond the pause ends"
    ),
    f"{RL}_ACQUIRE: 1 -> 2 in '  return {{used < max and 1 or 0, 0, math.'": BOOL,
    f"{RL}_ACQUIRE: 0 -> 1 in 'tonumber(last[2]) - now, 0) + window + 10'": (
        "the last score is the slot just added, now + hold (at least 1 s): never below 1"
    ),
    f"{RL}_ACQUIRE: 1 -> 2 in 'window + 1000)   return {{1, 0, max - used'": BOOL,
    f"{RL}_ACQUIRE: 1000 -> 1001 in '2]) - now, 0) + window + 1000)   return {{1, '": EXPIRY,
    f"{RL}_STAMP: 1000 -> 1001 in 'h.floor(tonumber(t[2]) / 1000) local score ='": SUB_MS,
    f"{RL}_STAMP: 1000 -> 1001 in 'ow + tonumber(ARGV[3]) + 1000 if ttl < need '": EXPIRY,
    f"{RL}_STAMP: > -> >= in 'nd old and tonumber(old) > score then sco'": "equal scores",
    f"{RL}_STAMP: < -> <= in 'r(ARGV[3]) + 1000 if ttl < need then redi'": "the same expiry",
    f"{RL}_PAUSE: 1000 -> 1001 in 'h.floor(tonumber(t[2]) / 1000) redis.call('S'": SUB_MS,
    f"{RL}_PAUSE: + -> - in 'ber(ARGV[1])) return now + tonumber(ARGV['": (
        "the script's answer is not used (pause() returns nothing)"
    ),
    f"{RQ}_dedupe_args: True -> (False)": "zip(strict=): push_deduped checked the lengths",
    f"{RQ}RecordQueue.push_deduped: not records -> (False)": (
        "no records: an empty MULTI/EXEC and the same empty answer"
    ),
    f"{RQ}RecordQueue.push_deduped: True -> (False) #2": "zip(strict=): one reply per chunk",
    f"{RQ}RecordQueue.release_reservations: 1000 -> (1001) #2": (
        "overlapping chunks: a key released by the first is not held any more, so not counted"
    ),
    f"{RQ}_PUSH_DEDUPED: 1 -> 0 in ' item = string.sub(item, 1, -2) .. ',\"d\":'": (
        "Lua's string.sub takes a start of 0 as 1"
    ),
}


def mutants(root: Path, modules: Sequence[Module]) -> list[Mutant]:
    found: list[Mutant] = []
    for module in modules:
        for site in module.sites:
            source = Source(root / site.path)
            found += python_mutants(module.name, site, source)
            found += lua_mutants(module.name, site, source)
    seen: Counter[str] = Counter()
    unique = []
    for m in found:  # the same change twice in one scope: number them
        seen[m.key] += 1
        key = m.key if seen[m.key] == 1 else f"{m.key} #{seen[m.key]}"
        unique.append(Mutant(m.module, m.path, m.line, m.start, m.end, m.text, key))
    return unique


# -- running: a copy of the project, a redis-server of its own, a forked child per mutant ---------

COPIED = ("appendq", "producer", "workers", "tests", "migrations", "pyproject.toml", "alembic.ini")
PRELOAD = (
    "pytest", "httpx", "redis", "sqlalchemy", "sqlalchemy.orm", "psycopg", "pydantic",
    "pydantic_settings", "hypothesis", "phonenumbers", "celery", "kombu", "fastapi",
    "prometheus_client", "alembic", "click",
)  # fmt: skip


#: Stop at the first failure; plain asserts and no plugins (no rewriting, no entry points to load):
#: a failing test is all a mutant needs, and this makes a run about a second shorter.
PYTEST_ARGS = (
    *("-x", "-q", "--assert=plain", "-W", "ignore", "-p", "no:cacheprovider"),
    *("-p", "no:unraisableexception", "-p", "no:threadexception"),
)


@contextmanager
def workspace() -> Iterator[tuple[Path, str]]:
    """A copy of the project (no bytecode) and the URL of a redis-server of the run's own; both
    gone afterwards. The tests of the copy import the copy (``tests`` is imported afresh)."""
    from tests.support.procs import RedisServer

    tmp = Path(tempfile.mkdtemp(prefix="appendq-mutate-"))
    server = RedisServer(tmp / "redis")
    try:
        for name in COPIED:
            if (ROOT / name).is_dir():
                ignore = shutil.ignore_patterns("__pycache__", ".hypothesis")
                shutil.copytree(ROOT / name, tmp / "project" / name, ignore=ignore)
            else:
                shutil.copy2(ROOT / name, tmp / "project" / name)
        server.start()
        yield tmp / "project", server.url
    finally:
        server.kill9()
        shutil.rmtree(tmp, ignore_errors=True)


def prepare(copy: Path, redis_url: str) -> None:
    """Make this process the children's template: the copy first on the path, no project
    module imported yet, the third-party libraries imported once, no bytecode written."""
    for name in [n for n in sys.modules if n.split(".")[0] in ("tests", "appendq", "producer")]:
        del sys.modules[name]
    sys.path[:] = [str(copy), *[p for p in sys.path if p != str(ROOT)]]
    sys.dont_write_bytecode = True
    os.environ.update(
        PYTHONDONTWRITEBYTECODE="1",
        PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
        APPENDQ_TEST_REDIS=redis_url,
    )
    for name in PRELOAD:
        __import__(name)
    gc.freeze()  # the children's garbage collections skip all that (and share its pages)


def run_tests(copy: Path, tests: Sequence[str], timeout: float) -> str:
    """Run ``tests`` in a forked child: "survived" (they passed), "killed", or "timeout"."""
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 3
        try:
            os.setsid()
            os.chdir(copy)
            quiet = os.open(os.devnull, os.O_WRONLY)
            os.dup2(quiet, 1)
            os.dup2(quiet, 2)
            import pytest

            code = int(pytest.main([*PYTEST_ARGS, *tests]))
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return "survived" if os.waitstatus_to_exitcode(status) == 0 else "killed"
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout"
        time.sleep(0.02)


def run_mutant(copy: Path, mutant: Mutant, tests: Sequence[str], timeout: float) -> str:
    """Write the mutant into the copy, run the tests, put the file back whatever happens."""
    path = copy / mutant.path
    original = path.read_bytes()
    try:
        path.write_bytes(original[: mutant.start] + mutant.text.encode() + original[mutant.end :])
        return run_tests(copy, tests, timeout)
    finally:
        path.write_bytes(original)


def run_module(copy: Path, module: Module, found: list[Mutant], verbose: bool) -> dict[Mutant, str]:
    started = time.monotonic()
    if run_tests(copy, module.tests, 300) != "survived":
        raise SystemExit(f"{module.name}: its tests fail without any mutant: fix them first")
    timeout = max(10.0, 4 * (time.monotonic() - started) + 5)
    results: dict[Mutant, str] = {}
    for mutant in found:
        if mutant.key in EQUIVALENT:
            results[mutant] = "equivalent"
            continue
        results[mutant] = run_mutant(copy, mutant, module.tests, timeout)
        if verbose:
            print(f"  {results[mutant]:>9}  {mutant.path}:{mutant.line}: {mutant.key}", flush=True)
    return results


def report(results: dict[Mutant, str], modules: Sequence[Module], threshold: float) -> int:
    """Print the figures per module and the survivors; 1 below ``threshold`` (%), else 0."""
    print(f"{'module':<10} {'mutants':>7} {'killed':>6} {'timeout':>7} {'survived':>8} "
          f"{'equiv.':>6} {'score':>6}")  # fmt: skip
    totals: Counter[str] = Counter()
    for module in modules:
        got = Counter(r for m, r in results.items() if m.module == module.name)
        totals.update(got)
        print(f"{module.name:<10} {sum(got.values()):>7} {got['killed']:>6} {got['timeout']:>7} "
              f"{got['survived']:>8} {got['equivalent']:>6} {score(got):>5.1f}%")  # fmt: skip
    print(f"{'all':<10} {sum(totals.values()):>7} {totals['killed']:>6} {totals['timeout']:>7} "
          f"{totals['survived']:>8} {totals['equivalent']:>6} {score(totals):>5.1f}%")  # fmt: skip
    survivors = [m for m, r in results.items() if r == "survived"]
    for mutant in survivors:
        print(f"survived: {mutant.path}:{mutant.line}: {mutant.key.split('::', 1)[1]}")
    return 1 if score(totals) < threshold else 0


def score(got: Counter[str]) -> float:
    counted = got["killed"] + got["timeout"] + got["survived"]
    return 100.0 * (got["killed"] + got["timeout"]) / counted if counted else 100.0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python tools/mutate.py")
    names = [m.name for m in MODULES]
    parser.add_argument("--module", action="append", choices=names, help="only these [all]")
    parser.add_argument("--threshold", type=float, default=90.0, help="minimum score, %%")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--verbose", action="store_true", help="print each mutant's fate")
    args = parser.parse_args()
    modules = [m for m in MODULES if not args.module or m.name in args.module]
    started = time.monotonic()
    with workspace() as (copy, redis_url):
        found = mutants(copy, modules)
        if args.list:
            for mutant in found:
                print(f"{mutant.module:<10} {mutant.path}:{mutant.line}: {mutant.key}")
            return 0
        prepare(copy, redis_url)
        results: dict[Mutant, str] = {}
        for module in modules:
            mine = [m for m in found if m.module == module.name]
            results.update(run_module(copy, module, mine, args.verbose))
    code = report(results, modules, args.threshold)
    print(f"{len(results)} mutants in {time.monotonic() - started:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
