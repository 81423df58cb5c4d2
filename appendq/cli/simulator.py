"""``appendq simulator``: run the LiveVox simulator (the default LiveVox for local runs)."""

from __future__ import annotations

from typing import Any

from appendq.cli.app import main
from appendq.simulator.command import run, simulator_options


@main.command("simulator")
@simulator_options
def simulator(**options: Any) -> None:
    """Run the LiveVox simulator until SIGTERM/SIGINT.

    Prints ``simulator listening on http://HOST:PORT`` once it accepts connections; script it
    through the ``/_admin`` endpoints (see appendq.simulator.admin).
    """
    run(**options)
