"""Operator and auditor commands: ``status``, ``audit``, ``retry``."""

from __future__ import annotations

import json
from typing import Any

import click

from appendq import audit, operator
from appendq.cli.app import main
from appendq.cli.common import load_settings
from appendq.runtime import Runtime
from appendq.status import collect


def _dump(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@main.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status_cmd(as_json: bool) -> None:
    """Queue depth and oldest age per target, campaign, hold reason, rate budget, batches."""
    rt = Runtime.build(load_settings(log=False))
    try:
        data = collect(rt)
    finally:
        rt.close()
    if as_json:
        _dump(data)
        return
    click.echo(f"{'target':<18} {'queued':>9} {'oldest':>9} {'campaign':>9}  hold reason")
    for row in data["targets"]:
        age = f"{row['oldest_age_s']:.0f}s" if row["oldest_age_s"] is not None else "-"
        click.echo(
            f"{row['target']:<18} {row['queued']:>9,} {age:>9} "
            f"{row['campaign_id'] or '-':>9}  {row['hold_reason'] or ''}"
        )
    rate = data["rate"]
    click.echo(
        f"rate budget: {rate['remaining']} of {rate['max_calls']} calls per {rate['window_s']:g} s"
    )
    counts = ", ".join(f"{k} {v:,}" for k, v in sorted(data["batches"].items())) or "none"
    click.echo(f"batches: {counts}")


@main.command("audit")
@click.option("--phone", help="phone1 of the record (any format).")
@click.option("--account", help="account of the record.")
@click.option("--batch", "batch_id", type=int, help="a batch id.")
@click.option("--record", "record_id", help="a record id from a receipt.")
@click.option("--limit", default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def audit_cmd(
    phone: str | None,
    account: str | None,
    batch_id: int | None,
    record_id: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """What happened to a lead: each matching record with its batch, status and timeline."""
    if not any((phone, account, batch_id, record_id)):
        raise click.UsageError("give --phone, --account, --batch or --record")
    settings = load_settings(log=False)
    rt = Runtime.build(settings)
    try:
        with rt.sessions() as session:
            found = audit.find_records(
                session,
                phone=phone,
                account=account,
                batch_id=batch_id,
                record_id=record_id,
                region=settings.default_region,
                limit=limit,
            )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    finally:
        rt.close()
    if as_json:
        _dump([r.to_dict() for r in found])
        return
    if not found:
        click.echo("no record found")
    for rec in found:
        click.echo(
            f"{rec.record_id} {rec.target} phone {rec.phone1} account {rec.account or '-'}"
            f": {rec.status} in batch {rec.batch_id} (campaign {rec.campaign_id or '-'})"
            + (f" - {rec.reason}" if rec.reason else "")
        )
        for t in rec.timeline:
            click.echo(
                f"    {t.at:%Y-%m-%d %H:%M:%S%z}  {t.status:<10} {t.actor:<28} {t.reason or ''}"
            )


@main.command("retry")
@click.option("--batch", "batch_id", type=int, required=True, help="the batch to send again.")
@click.option("--reason", required=True, help="why (recorded in the audit).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def retry_cmd(batch_id: int, reason: str, yes: bool) -> None:
    """Send a failed, held, rejected or in_doubt batch again (recorded with who and why)."""
    rt = Runtime.build(load_settings(log=False))
    try:
        with rt.sessions() as session:
            records = audit.find_records(session, batch_id=batch_id, limit=1)
            if not records:
                raise click.ClickException(f"no batch {batch_id}")
            click.echo(f"batch {batch_id}: {records[0].status}, target {records[0].target}")
            if not yes and not click.confirm("send it again?"):
                click.echo("nothing changed")
                return
            moved = audit.retry_batch(session, batch_id, reason=reason)
            session.commit()
            if moved is None:
                raise click.ClickException(
                    f"batch {batch_id} is {records[0].status}: only "
                    f"{', '.join(operator.RETRYABLE)} batches can be retried"
                )
            click.echo(f"batch {batch_id} is ready again ({moved.size} records)")
    finally:
        rt.close()
