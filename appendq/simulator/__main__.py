"""``python -m appendq.simulator``: the same command as ``appendq simulator``, without loading
the rest of the CLI."""

from __future__ import annotations

from typing import Any

import click

from appendq.simulator.command import run, simulator_options


@click.command("simulator")
@simulator_options
def simulator(**options: Any) -> None:
    """Run the LiveVox simulator until SIGTERM/SIGINT."""
    run(**options)


if __name__ == "__main__":
    simulator()
