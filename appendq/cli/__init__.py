"""Entry point of the ``appendq`` command; importing the command modules registers them."""

from __future__ import annotations

from appendq.cli import (  # noqa: F401  (registers commands)
    accounts,
    audit,
    doctor,
    enqueue,
    keys,
    ops,
    serve,
    simulator,
    targets,
    worker,
)
from appendq.cli.app import main

__all__ = ["main"]
