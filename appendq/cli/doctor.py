"""``appendq doctor``: probe the configured LiveVox read-only and print a ✓/✗/? checklist
(appendq.doctor). Exit 0 when nothing failed, 1 when a check failed, 2 when LiveVox refused the
credentials (then the output is that one line)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from appendq.cli.app import main
from appendq.cli.common import accounts_of, load_settings, refuse_bad_input
from appendq.doctor import contract_snapshot, run_doctor, save_contract


@main.command("doctor")
@click.option(
    "--service",
    "services",
    type=int,
    multiple=True,
    help="LiveVox service id whose campaigns today are searched (repeatable; none: all).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option(
    "--account",
    metavar="NAME",
    help="The LiveVox account of APPENDQ_ACCOUNTS_FILE to check [default: default].",
)
@click.option(
    "--save-contract",
    "save_contract_to",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write a redacted contract snapshot (for appendq simulator --contract FILE).",
)
def doctor(
    services: tuple[int, ...], as_json: bool, account: str | None, save_contract_to: Path | None
) -> None:
    """Check the configured LiveVox read-only: TLS, login, session, clock, role, campaigns,
    status words, paging, details, transactionList phones, answer shapes. Never appends."""
    # No logging setup: httpx would log request URLs, and the validate URL holds the session id.
    settings = load_settings(log=False)
    with refuse_bad_input():
        chosen = accounts_of(settings).get_account(account)
    report = run_doctor(chosen.settings, services)
    if as_json:
        click.echo(json.dumps(report.as_json(contract_snapshot(report)), indent=2))
    else:
        for line in report.lines():
            click.echo(line)
    if save_contract_to is not None and not report.login_denied:
        save_contract(report, save_contract_to)
        click.echo(f"contract snapshot saved to {save_contract_to}", err=True)
    raise SystemExit(report.exit_code)
