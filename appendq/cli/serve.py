"""``appendq serve``: the HTTP intake (``appendq.http``) under uvicorn."""

from __future__ import annotations

import logging

import click
import uvicorn

from appendq.cli.app import main
from appendq.cli.common import load_settings
from appendq.errors import ConfigError


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
def serve_cmd(host: str, port: int, insecure_no_auth: bool) -> None:
    """Run the HTTP intake: POST /v1/leads, audit, retry, status, /metrics, /healthz, /docs.
    Tokens and their roles: APPENDQ_API_TOKENS (name:role:secret, comma-separated)."""
    from appendq.http.app import create_app  # FastAPI is only imported by this command

    settings = load_settings()
    try:
        app = create_app(settings, allow_no_auth=insecure_no_auth)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    logging.getLogger("uvicorn.access").addFilter(_PathOnly())
    # log_config=None: uvicorn's loggers go through the logging this command configured
    # (phone numbers masked, tokens scrubbed).
    uvicorn.run(app, host=host, port=port, log_config=None, server_header=False)
