"""Engines, sessions and schema migrations for the audit database.

Nothing is built at import time: each entry point calls ``make_engine(settings)`` once and
``make_sessionmaker(engine)`` on it, and disposes of the engine when it stops. ``migrate()`` runs
Alembic in-process with the project's ``alembic.ini``; ``ensure_database()`` creates the database
on a fresh machine so that the defaults work without a manual ``createdb``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from appendq.db import partitions
from appendq.errors import ConfigError

if TYPE_CHECKING:
    from appendq.settings import Settings

log = logging.getLogger(__name__)

#: Where ``alembic.ini`` and ``migrations/`` live in a source checkout (or an editable install).
REPO_ROOT = Path(__file__).resolve().parents[2]

#: One drain at a time per worker, plus the HTTP intake and ops commands: a small pool is plenty.
POOL_SIZE = 5
POOL_MAX_OVERFLOW = 5
POOL_RECYCLE_S = 1800

MAINTENANCE_DB = "postgres"


def make_engine(settings: Settings) -> Engine:
    """The one engine of a process: psycopg 3, connections checked before use."""
    return create_engine(
        psycopg_url(settings.database_url),
        pool_pre_ping=True,
        pool_size=POOL_SIZE,
        max_overflow=POOL_MAX_OVERFLOW,
        pool_recycle=POOL_RECYCLE_S,
    )


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (we log and report them afterwards)."""
    return sessionmaker(engine, expire_on_commit=False)


def psycopg_url(database_url: str | URL) -> str:
    """``postgresql://…`` or ``postgres://…`` as users write it, with the psycopg 3 driver."""
    url = make_url(database_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def alembic_config(database_url: str) -> Config:
    """An Alembic Config for this project, pointed at ``database_url``.

    Uses ``alembic.ini`` from the source tree when there is one (editable install or checkout),
    else from the working directory (the container image), else builds the Config in code around
    whichever ``migrations/`` directory it finds.
    """
    roots = (REPO_ROOT, Path.cwd())
    ini = next((root / "alembic.ini" for root in roots if (root / "alembic.ini").is_file()), None)
    if ini is not None:
        cfg = Config(str(ini))
    else:
        scripts = next(
            (root / "migrations" for root in roots if (root / "migrations").is_dir()), None
        )
        if scripts is None:
            raise ConfigError(
                f"no alembic.ini or migrations/ directory under {REPO_ROOT} or {Path.cwd()}: "
                "run from a source checkout or the container image"
            )
        cfg = Config()
        cfg.set_main_option("script_location", str(scripts))
        cfg.set_main_option("path_separator", "os")
    # ConfigParser interpolates "%": escape it so percent-encoded passwords survive.
    cfg.set_main_option("sqlalchemy.url", psycopg_url(database_url).replace("%", "%%"))
    # The caller's logging is already configured; don't let alembic.ini's [loggers] replace it.
    cfg.attributes["configure_logger"] = False
    return cfg


def migrate(database_url: str, revision: str = "head") -> None:
    """Upgrade the schema of ``database_url`` to ``revision`` (Alembic, in-process), then create
    the daily partitions up to ``partitions.AHEAD_DAYS`` ahead (once the schema has them)."""
    cfg = alembic_config(database_url)
    log.info(
        "migrating database",
        extra={"database": make_url(database_url).database, "revision": revision},
    )
    command.upgrade(cfg, revision)
    engine = create_engine(psycopg_url(database_url), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            partitions.ensure_ahead(conn)
    finally:
        engine.dispose()


def ensure_database(database_url: str) -> bool:
    """Create the database named in ``database_url`` if it does not exist; True if created.

    Connects to the ``postgres`` maintenance database of the same server, with AUTOCOMMIT since
    CREATE DATABASE cannot run inside a transaction. Safe when two processes race to create it.
    """
    url = make_url(psycopg_url(database_url))
    name = url.database
    if not name:
        raise ConfigError("APPENDQ_DATABASE_URL names no database")
    admin = create_engine(
        url.set(database=MAINTENANCE_DB), poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as conn:
            exists = conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if exists:
                return False
            quoted = conn.dialect.identifier_preparer.quote_identifier(name)
            try:
                conn.execute(text(f"CREATE DATABASE {quoted}"))
            except DBAPIError as exc:
                # Another process created it between our check and ours: duplicate_database, or
                # the unique violation on pg_database when both got past the catalog check.
                if getattr(exc.orig, "sqlstate", None) in ("42P04", "23505"):
                    return False
                raise
    finally:
        admin.dispose()
    log.info("created database", extra={"database": name})
    return True
