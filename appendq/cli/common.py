"""Helpers shared by the CLI commands: settings from the environment, logging, clean errors."""

from __future__ import annotations

import click
from pydantic import ValidationError

from appendq.logs import configure_logging
from appendq.settings import Settings


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
