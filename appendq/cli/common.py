"""Helpers shared by the CLI commands: settings from the environment, logging, the Runtime,
clean errors, times in and out (both in APPENDQ_TIMEZONE), JSON output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import click
from pydantic import ValidationError

from appendq.accounts import Accounts, load_accounts
from appendq.errors import ConfigError, InvalidValue
from appendq.logs import configure_logging
from appendq.settings import Settings
from appendq.target import ID_MAX

#: The click type of every id option (--service, --campaign, --batch): the BIGINT range.
ID = click.IntRange(1, ID_MAX)
#: How the commands print a moment (after ``astimezone(settings.tz)``).
TIME_FORMAT = "%Y-%m-%d %H:%M:%S %Z"


class IsoTime(click.ParamType[datetime]):
    """An ISO 8601 date or date-time; a command reads one without an offset in APPENDQ_TIMEZONE
    (``appendq.clock.in_zone``)."""

    name = "ISO-TIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO date or time (2026-11-28, 2026-11-28T14:30-05:00)")


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


class BadInput(click.ClickException):
    """A value the user gave cannot be used: one line on stderr, exit 2 (a usage error)."""

    exit_code = 2


@contextmanager
def refuse_bad_input() -> Iterator[None]:
    """Turn ``InvalidValue`` (an id out of range, a control character, a reason too long) into
    a one-line error and exit 2, never a traceback."""
    try:
        yield
    except InvalidValue as exc:
        raise BadInput(str(exc)) from None


def load_settings(*, log: bool = True) -> Settings:
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"APPENDQ_{'_'.join(str(p) for p in e['loc']).upper() or 'SETTINGS'}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise click.ClickException(f"invalid settings: {problems}") from None
    if log:
        configure_logging(settings)
    settings.warn_if_unsafe()
    return settings


def accounts_of(settings: Settings) -> Accounts:
    """The LiveVox accounts (``appendq.accounts``); a bad APPENDQ_ACCOUNTS_FILE is one line
    naming every problem, exit 1."""
    try:
        return load_accounts(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
