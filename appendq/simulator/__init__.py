"""The LiveVox simulator: a real HTTP server that speaks the calls appendq makes and enforces
LiveVox's rules (sessions, roles, the 10,000-record and 30-phone caps, today's/appendable
campaigns, each client's rolling rate window, FIFO appends, portal counts), scriptable through
``/_admin``.

Several clients (LiveVox accounts) share one simulator, each with its own credentials, services,
campaigns and rate window; faults can be scoped to one client.

Modules: ``config`` (the JSON configuration), ``model`` (sessions, campaigns, calls),
``catalog`` (live clients/services/campaigns), ``sessions`` (logins and idle expiry),
``ratewindow`` (each client's rolling Append window), ``rules`` (append refusals), ``queries``
(search filter, transactionList, stats), ``dialect`` (LiveVox's unconfirmed corners, one setting
each), ``faults`` (scripted failures), ``state`` (the locked in-memory model),
``routes``/``admin`` (HTTP routes), ``server`` (the HTTP server), ``command`` (CLI).
"""

from __future__ import annotations

from appendq.simulator.config import SimConfig, parse_config, seeded_clients
from appendq.simulator.server import SimServer, serve, start_in_thread
from appendq.simulator.state import SimulatorState

__all__ = [
    "SimConfig",
    "SimServer",
    "SimulatorState",
    "parse_config",
    "seeded_clients",
    "serve",
    "start_in_thread",
]
