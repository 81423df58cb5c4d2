"""The simulator's command-line options and its entry point, shared by ``appendq simulator`` and
``python -m appendq.simulator``.

Precedence: command-line option (or ``APPENDQ_TIMEZONE``) > ``--config`` file > default; for
the dialect: ``--dialect`` > ``--contract`` > the file's ``"dialect"`` > the default dialect.
``--clients ACME,BETA`` seeds those clients (:func:`appendq.simulator.config.seeded_clients`)
in place of the default seed; the file's users, services and campaigns, if it has any, replace
the seeded ones, and a file that lists clients cannot be combined with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from appendq.logs import configure_logging
from appendq.settings import Settings
from appendq.simulator.config import SimConfig, load_config_file, parse_config, seeded_clients
from appendq.simulator.dialect import dialect_from_contract, parse_dialect_option
from appendq.simulator.server import serve
from appendq.simulator.state import SimulatorState

log = logging.getLogger(__name__)

_F = TypeVar("_F", bound=Callable[..., Any])

_OPTIONS = (
    click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on."),
    click.option("--port", default=8765, show_default=True, type=int, help="0: any free port."),
    click.option(
        "--config",
        "config_path",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="JSON file: clients, users, services, campaigns, limits (POST /_admin/reset shape).",
    ),
    click.option(
        "--clients",
        "client_names",
        metavar="NAMES",
        help="Comma-separated LiveVox clients to seed (e.g. ACME,BETA): the k-th gets user "
        "appendq, service 1001+100k and campaign 5001+100k [default: SIMCLIENT].",
    ),
    click.option(
        "--rate-max-calls", type=int, help="Append calls per window, per client [default: 5]."
    ),
    click.option("--rate-window-s", type=float, help="Rolling window in seconds [default: 60]."),
    click.option("--session-idle-s", type=float, help="Session idle expiry [default: 7200]."),
    click.option("--dial-per-s", type=float, help="Records dialled per second [default: 0.5]."),
    click.option(
        "--dialect",
        "dialect_option",
        help="LiveVox dialect: a preset (default, java, dotnet, quiet, unreadable, strict, "
        "legacy) and/or fields, e.g. java,tx_delay_s=2 or phone_key=phones,numbering=one.",
    ),
    click.option(
        "--contract",
        "contract_path",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Play the dialect of a contract snapshot (appendq doctor --save-contract).",
    ),
    click.option(
        "--timezone",
        envvar="APPENDQ_TIMEZONE",
        help="Zone that decides 'today' [default: $APPENDQ_TIMEZONE or America/New_York].",
    ),
)


def simulator_options(func: _F) -> _F:
    for option in reversed(_OPTIONS):
        func = option(func)
    return func


def build_config(
    config_path: Path | None = None,
    contract_path: Path | None = None,
    dialect_option: str | None = None,
    client_names: str | None = None,
    **overrides: Any,
) -> SimConfig:
    """The configuration from the optional file and ``--clients``, then the command-line
    overrides."""
    data = load_config_file(config_path) if config_path else {}
    if client_names is not None:
        if "clients" in data:
            raise ValueError("--clients cannot be combined with a --config that lists clients")
        names = [n.strip() for n in client_names.split(",") if n.strip()]
        data = {**seeded_clients(names), **data}
    config = parse_config(data)
    dialect = config.dialect
    if contract_path is not None:
        dialect = dialect_from_contract(load_config_file(contract_path))
    if dialect_option:
        dialect = parse_dialect_option(dialect_option, dialect)
    return config.with_overrides(dialect=dialect, **overrides)


def _configure_logging() -> None:
    """The project's logging (phones masked, secrets scrubbed); plain logging if the APPENDQ_*
    settings are unusable, since the simulator does not depend on them."""
    try:
        configure_logging(Settings())
    except ValidationError as exc:
        logging.basicConfig(level=logging.INFO)
        log.warning("APPENDQ_* settings invalid (%s errors); plain logging", exc.error_count())


def run(host: str, port: int, config_path: Path | None, **overrides: Any) -> None:
    """Build the state from the options and serve until SIGTERM/SIGINT."""
    _configure_logging()
    try:
        config = build_config(config_path, **overrides)
    except (OSError, ValueError) as exc:
        raise click.UsageError(f"simulator configuration: {exc}") from exc
    if config.dialect != SimConfig().dialect:
        log.info("simulator dialect: %s", config.dialect.as_json())
    if config.rate_window_s < 60:
        log.warning("simulator rate window %ss is shorter than LiveVox's 60s", config.rate_window_s)
    serve(SimulatorState(config), host, port)
