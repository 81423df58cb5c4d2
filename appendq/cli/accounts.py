"""``appendq accounts``: the LiveVox accounts this configuration serves (APPENDQ_ACCOUNTS_FILE,
checked as every command checks it), each with its client, URL, user, time zone, Redis prefix,
tick queue and queued records; never a secret. Accounts that still have records queued but are
no longer in the file are named: nothing drains them until they are put back."""

from __future__ import annotations

import json
from typing import Any

import click
import redis

from appendq.accounts import Accounts, unconfigured
from appendq.cli.app import main
from appendq.cli.common import accounts_of, load_settings
from appendq.queue.record_queue import RecordQueue
from appendq.settings import Settings
from workers.celery_app import tick_queue


def listing(settings: Settings, accounts: Accounts, client: redis.Redis) -> dict[str, Any]:
    rows = []
    for account in accounts.values():
        s, keys = account.settings, account.keys()
        rows.append(
            {
                "account": account.name,
                "client_name": s.livevox_client_name,
                "base_url": s.livevox_base_url,
                "username": s.livevox_username,
                "timezone": s.timezone,
                "redis_prefix": keys.prefix,
                "tick_queue": tick_queue(settings, account.name),
                "queued": RecordQueue(client, keys, account.name).depth(),
            }
        )
    return {"accounts": rows, "unconfigured": unconfigured(client, settings.redis_prefix, accounts)}


@main.command("accounts")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def accounts_cmd(as_json: bool) -> None:
    """The LiveVox accounts served (checking APPENDQ_ACCOUNTS_FILE), and any account with
    records still queued that the file no longer names (exit 1 then)."""
    settings = load_settings(log=False)
    accounts = accounts_of(settings)
    client = redis.Redis.from_url(settings.redis_url)
    try:
        found = listing(settings, accounts, client)
    finally:
        client.close()
    if as_json:
        click.echo(json.dumps(found, indent=2))
    else:
        for row in found["accounts"]:
            click.echo(
                f"{row['account']:<16} {row['client_name']:<16} {row['username']}@"
                f"{row['base_url']}  {row['timezone']}  {row['queued']:,} queued  "
                f"(keys {row['redis_prefix']}:*, ticks on {row['tick_queue']})"
            )
        for name, depth in found["unconfigured"].items():
            click.echo(
                f"NOT CONFIGURED: account {name} has {depth:,} records queued that nothing "
                "drains: put it back in APPENDQ_ACCOUNTS_FILE",
                err=True,
            )
    if found["unconfigured"]:
        raise SystemExit(1)
