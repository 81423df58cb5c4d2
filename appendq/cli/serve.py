"""``appendq serve``: the HTTP intake (``appendq.http``) under uvicorn.

``--workers N`` runs N uvicorn worker processes on the same port (uvicorn's own supervisor
restarts one that dies); each builds its own app, Runtime and connections from the same
APPENDQ_* settings (``worker_app``). The settings, tokens and accounts file are checked once in
the parent first, so a bad configuration stops the command before any worker starts.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import click
import uvicorn

from appendq.cli.app import main
from appendq.cli.common import load_settings
from appendq.errors import ConfigError

if TYPE_CHECKING:
    from fastapi import FastAPI

#: How ``--insecure-no-auth`` reaches the worker processes (set by the parent only).
_NO_AUTH = "APPENDQ_SERVE_INSECURE_NO_AUTH"


class _PathOnly(logging.Filter):
    """Access log lines without the query string: ``/v1/audit?phone=...`` must not log a phone."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], args[2].split("?", 1)[0], args[3], args[4])
        return True


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    help="With APPENDQ_API_TOKENS empty, every caller is anonymous with every role (local "
    "demos only).",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Processes serving requests on the port (validation is CPU: about one per core).",
)
def serve_cmd(host: str, port: int, insecure_no_auth: bool, workers: int) -> None:
    """Run the HTTP intake: POST /v1/leads, audit, retry, status, /metrics, /healthz, /docs,
    and the operator's console at /ui/. Tokens and their roles: APPENDQ_API_TOKENS
    (name:role:secret, comma-separated)."""
    from appendq.http.app import create_app  # FastAPI is only imported by this command

    settings = load_settings()
    try:
        app = create_app(settings, allow_no_auth=insecure_no_auth)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    logging.getLogger("uvicorn.access").addFilter(_PathOnly())
    # log_config=None: uvicorn's loggers go through the logging this command configured
    # (phone numbers masked, tokens scrubbed).
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_config=None, server_header=False)
        return
    os.environ[_NO_AUTH] = "1" if insecure_no_auth else ""
    uvicorn.run(
        f"{__name__}:worker_app",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_config=None,
        server_header=False,
    )


def worker_app() -> FastAPI:
    """The app of one ``--workers`` process: logging and settings as the parent has them."""
    from appendq.http.app import create_app

    settings = load_settings()
    logging.getLogger("uvicorn.access").addFilter(_PathOnly())
    return create_app(settings, allow_no_auth=os.environ.get(_NO_AUTH) == "1")
