"""``appendq targets``: see which targets are set aside and why, clear one, set one aside by hand,
and read the history of both (``appendq.drain.set_aside``). Every change is recorded with who
and why."""

from __future__ import annotations

import json
from datetime import datetime, tzinfo
from typing import Any

import click

from appendq.audit.access import operator_actor
from appendq.cli.app import main
from appendq.cli.common import TIME_FORMAT, load_settings, refuse_bad_input
from appendq.drain import set_aside
from appendq.keys import DEFAULT_ACCOUNT
from appendq.ops import retry
from appendq.runtime import Runtime


def _when(at: float, tz: tzinfo) -> str:
    return datetime.fromtimestamp(at, tz).strftime(TIME_FORMAT)


def listing(rt: Runtime) -> list[dict[str, Any]]:
    """Every known target with its depth and, when set aside, kind, reason, since and by whom."""
    aside = set_aside.current(rt.redis, rt.keys)
    rows = []
    for target in sorted(set(rt.queue.targets()) | set(aside)):
        entry = aside.get(target)
        rows.append(
            {
                "target": target,
                "queued": rt.queue.depth(target),
                "set_aside": entry.to_dict() if entry else None,
            }
        )
    return rows


@main.group("targets", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def targets_cmd(ctx: click.Context, as_json: bool) -> None:
    """Targets, and which are set aside (skipped by the drain until an operator clears them)."""
    if ctx.invoked_subcommand is not None:
        return
    settings = load_settings(log=False)
    with Runtime.build(settings) as rt:
        rows = listing(rt)
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
        click.echo(f"{row['target']:<24} {row['queued']:>9} queued  {state}")


def _operator_input(reason: str, actor: str | None) -> tuple[str, str]:
    with refuse_bad_input():
        checked = retry.check_reason(reason)
    return checked, actor or operator_actor()


def _act(target: str, reason: str, actor: str | None, *, clear: bool) -> bool:
    """Clear or set aside ``target`` for the operator, recorded with who and why."""
    why, who = _operator_input(reason, actor)
    with Runtime.build(load_settings()) as rt:
        if clear:
            return set_aside.clear(
                rt.redis,
                rt.keys,
                rt.sessions,
                target,
                reason=why,
                actor=who,
                account=DEFAULT_ACCOUNT,
            )
        set_aside.set_aside(
            rt.redis,
            rt.keys,
            rt.sessions,
            target,
            kind="operator",
            reason=why,
            actor=who,
            account=DEFAULT_ACCOUNT,
        )
        return True


_REASON = click.option("--reason", required=True, help="Why (recorded in the audit).")
_ACTOR = click.option("--actor", help="Who, for the audit (default operator:<login>).")


@targets_cmd.command("clear")
@click.argument("target")
@_REASON
@_ACTOR
def clear_cmd(target: str, reason: str, actor: str | None) -> None:
    """Put a set-aside TARGET back in the drain."""
    if not _act(target, reason, actor, clear=True):
        raise click.ClickException(f"{target} is not set aside")
    click.echo(f"{target} cleared: the next tick drains it again")


@targets_cmd.command("set-aside")
@click.argument("target")
@_REASON
@_ACTOR
def set_aside_cmd(target: str, reason: str, actor: str | None) -> None:
    """Set TARGET aside by hand: its records stay queued, the drain skips it until cleared."""
    _act(target, reason, actor, clear=False)
    click.echo(f"{target} set aside; `appendq targets clear {target} --reason ...` puts it back")


@targets_cmd.command("history")
@click.argument("target", required=False)
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def history_cmd(target: str | None, limit: int, as_json: bool) -> None:
    """Set-aside and clear events, newest first, with who and why."""
    with Runtime.build(load_settings(log=False)) as rt, rt.sessions() as session:
        events = [
            {
                "at": e.at.isoformat(),
                "target": e.target,
                "action": e.action,
                "kind": e.kind,
                "actor": e.actor,
                "reason": e.reason,
            }
            for e in set_aside.history(session, target=target, limit=limit)
        ]
    if as_json:
        click.echo(json.dumps(events, indent=2))
        return
    for e in events:
        kind = f" ({e['kind']})" if e["kind"] else ""
        click.echo(f"{e['at']}  {e['target']}  {e['action']}{kind}  {e['actor']}: {e['reason']}")
