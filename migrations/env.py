"""Alembic environment for appendq.

The database URL comes from ``sqlalchemy.url`` when a caller set it on the Config (``migrate()``
and the tests do), else from the same Settings every entry point reads (``APPENDQ_DATABASE_URL``).
A caller may also hand over an open connection in ``config.attributes["connection"]``.
"""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import Connection, create_engine
from sqlalchemy.pool import NullPool

from appendq.db import partitions
from appendq.db.engine import psycopg_url
from appendq.db.models import Base
from appendq.settings import Settings

config = context.config

if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def database_url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    return psycopg_url(url or Settings().database_url)


def _not_a_partition(obj: Any, name: str | None, kind: str, reflected: bool, _: Any) -> bool:
    """Leave the daily partitions (``appendq.db.partitions``) and their indexes out of the
    comparison with the models: they are made at run time, the models describe their parents."""
    table = obj.table.name if kind == "index" else name
    return not (reflected and partitions.is_partition_name(str(table)))


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        include_object=_not_a_partition,
        **kwargs,
    )


def run_migrations_offline() -> None:
    """Emit SQL to stdout (``alembic upgrade head --sql``) instead of running it."""
    _configure(url=database_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run_on(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    engine = create_engine(database_url(), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            _run_on(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
