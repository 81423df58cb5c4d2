"""Entry point of the ``appendq`` command; importing the command modules registers them."""

from __future__ import annotations

from appendq.cli import enqueue, ops, serve, simulator, worker  # noqa: F401  (registers commands)
from appendq.cli.app import main

__all__ = ["main"]
