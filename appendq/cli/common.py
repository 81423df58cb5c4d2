"""Helpers shared by the CLI commands: settings from the environment, logging, clean errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from pydantic import ValidationError

from appendq.errors import InvalidValue
from appendq.logs import configure_logging
from appendq.records import ID_MAX
from appendq.settings import Settings

#: The click type of every id option (--service, --campaign, --batch): the BIGINT range.
ID = click.IntRange(1, ID_MAX)


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
