"""The ``appendq`` command group. Each command lives in its own module and only builds
dependencies from Settings, then calls plain functions."""

from __future__ import annotations

import click

from appendq import __version__


@click.group()
@click.version_option(__version__, prog_name="appendq")
def main() -> None:
    """appendq: feed leads into today's LiveVox campaign, within LiveVox's limits."""
