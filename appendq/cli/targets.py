"""``appendq targets``: see which targets are set aside and why, clear one, set one aside by hand,
and read the history of both (``appendq.drain.set_aside``). Every change is recorded with who
and why.

A target belongs to a LiveVox account (two accounts may each have a ``service:1001``): the
listing and the history show every account's unless ``--account`` names one; ``clear`` and
``set-aside`` act on one account's target, ``default`` unless ``--account`` names another."""

from __future__ import annotations

import json
from datetime import datetime, tzinfo
from typing import Any

import click

from appendq.accounts import check_name
from appendq.audit.access import operator_actor
from appendq.cli.app import main
from appendq.cli.common import TIME_FORMAT, load_settings, refuse_bad_input
from appendq.drain import set_aside
from appendq.keys import DEFAULT_ACCOUNT
from appendq.ops import retry
from appendq.runtime import Runtime


def _when(at: float, tz: tzinfo) -> str:
    return datetime.fromtimestamp(at, tz).strftime(TIME_FORMAT)


def listing(rt: Runtime, account: str | None = None) -> list[dict[str, Any]]:
    """Every known target of every account (or of ``account``) with its depth and, when set
    aside, kind, reason, since and by whom."""
    names = list(rt.accounts) if account is None else [rt.accounts.get_account(account).name]
    rows = []
    for name in names:
        lane = rt.lane(name)
        aside = set_aside.current(rt.redis, lane.keys)
        for target in sorted(set(lane.queue.targets()) | set(aside)):
            entry = aside.get(target)
            rows.append(
                {
                    "account": name,
                    "target": target,
                    "queued": lane.queue.depth(target),
                    "set_aside": entry.to_dict() if entry else None,
                }
            )
    return rows


_ACCOUNT_HELP = "The LiveVox account [default: every one]."


@main.group("targets", invoke_without_command=True)
@click.option("--account", metavar="NAME", help=_ACCOUNT_HELP)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def targets_cmd(ctx: click.Context, account: str | None, as_json: bool) -> None:
    """Targets, and which are set aside (skipped by the drain until an operator clears them)."""
    if ctx.invoked_subcommand is not None:
        return
    settings = load_settings(log=False)
    with Runtime.build(settings) as rt, refuse_bad_input():
        rows = listing(rt, account)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no targets")
    for row in rows:
        entry = row["set_aside"]
        state = "draining"
        if entry:
            since = _when(entry["at"], settings.tz)
            state = f"SET ASIDE ({entry['kind']}) since {since} by {entry['actor']}: "
            state += entry["reason"]
        click.echo(f"{row['account']:<12} {row['target']:<24} {row['queued']:>9} queued  {state}")


def _operator_input(reason: str, actor: str | None) -> tuple[str, str]:
    with refuse_bad_input():
        checked = retry.check_reason(reason)
    return checked, actor or operator_actor()


def _act(target: str, account: str | None, reason: str, actor: str | None, *, clear: bool) -> bool:
    """Clear or set aside ``account``'s ``target`` for the operator, recorded with who and why."""
    why, who = _operator_input(reason, actor)
    with Runtime.build(load_settings()) as rt:
        with refuse_bad_input():
            lane = rt.lane(account)
        name = lane.account.name
        if clear:
            return set_aside.clear(
                rt.redis, lane.keys, rt.sessions, target, reason=why, actor=who, account=name
            )
        set_aside.set_aside(
            rt.redis,
            lane.keys,
            rt.sessions,
            target,
            kind="operator",
            reason=why,
            actor=who,
            account=name,
        )
        return True


def _named(target: str, account: str | None) -> str:
    """The target as the operator names it, with its account unless it is the default one."""
    return target if account in (None, DEFAULT_ACCOUNT) else f"{target} of account {account}"


_REASON = click.option("--reason", required=True, help="Why (recorded in the audit).")
_ACTOR = click.option("--actor", help="Who, for the audit (default operator:<login>).")
_ACCOUNT = click.option("--account", metavar="NAME", help="The LiveVox account [default: default].")


@targets_cmd.command("clear")
@click.argument("target")
@_ACCOUNT
@_REASON
@_ACTOR
def clear_cmd(target: str, account: str | None, reason: str, actor: str | None) -> None:
    """Put a set-aside TARGET back in the drain."""
    if not _act(target, account, reason, actor, clear=True):
        raise click.ClickException(f"{_named(target, account)} is not set aside")
    click.echo(f"{_named(target, account)} cleared: the next tick drains it again")


@targets_cmd.command("set-aside")
@click.argument("target")
@_ACCOUNT
@_REASON
@_ACTOR
def set_aside_cmd(target: str, account: str | None, reason: str, actor: str | None) -> None:
    """Set TARGET aside by hand: its records stay queued, the drain skips it until cleared."""
    _act(target, account, reason, actor, clear=False)
    again = f"appendq targets clear {target}" + (f" --account {account}" if account else "")
    click.echo(f"{_named(target, account)} set aside; `{again} --reason ...` puts it back")


@targets_cmd.command("history")
@click.argument("target", required=False)
@click.option("--account", metavar="NAME", help=_ACCOUNT_HELP)
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def history_cmd(target: str | None, account: str | None, limit: int, as_json: bool) -> None:
    """Set-aside and clear events, newest first, with who and why. Any account name is taken,
    configured or not: the history outlives an account removed from the accounts file."""
    with refuse_bad_input():
        account = None if account is None else check_name(account, "--account")
    with Runtime.build(load_settings(log=False)) as rt, rt.sessions() as session:
        events = [
            {
                "at": e.at.isoformat(),
                "account": e.livevox_account,
                "target": e.target,
                "action": e.action,
                "kind": e.kind,
                "actor": e.actor,
                "reason": e.reason,
            }
            for e in set_aside.history(session, account=account, target=target, limit=limit)
        ]
    if as_json:
        click.echo(json.dumps(events, indent=2))
        return
    for e in events:
        kind = f" ({e['kind']})" if e["kind"] else ""
        click.echo(
            f"{e['at']}  {e['account']}  {e['target']}  {e['action']}{kind}  "
            f"{e['actor']}: {e['reason']}"
        )
