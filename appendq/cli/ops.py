"""Operator commands: ``status``, ``retry``, ``prune`` (``audit`` is ``appendq.cli.audit``).

Each command builds its dependencies from Settings and calls plain functions
(``appendq.ops.status``, ``appendq.ops.retry``, ``appendq.batches.prune``). Commands that change
something (retry, prune) show what they will do and ask first; ``--yes`` skips the question, and
without a terminal to ask on they refuse and change nothing. ``status`` and ``retry`` cover every
LiveVox account unless ``--account`` names one.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from datetime import datetime, tzinfo
from typing import Any

import click
from sqlalchemy.orm import Session

from appendq.audit import timeline
from appendq.audit.access import operator_actor
from appendq.batches import prune
from appendq.cli.app import main
from appendq.cli.common import (
    ID,
    TIME_FORMAT,
    IsoTime,
    echo_json,
    load_settings,
    refuse_bad_input,
)
from appendq.clock import in_zone
from appendq.db.models import RETRYABLE_STATUSES, BatchStatus
from appendq.keys import DEFAULT_ACCOUNT
from appendq.ops import retry
from appendq.ops.retry import BatchSummary, RetryFilter, RetryResult
from appendq.ops.status import collect
from appendq.runtime import Runtime
from appendq.settings import Settings

log = logging.getLogger(__name__)

#: Preview rows printed before "... and N more".
PREVIEW_ROWS = 50


def _confirm(question: str, yes: bool) -> None:
    """Go on with --yes, or a "y" typed at a terminal; otherwise stop, having changed nothing."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise click.ClickException(
            "no terminal to ask for confirmation: nothing changed (add --yes to go ahead)"
        )
    if not click.confirm(question, default=False, err=True):
        raise click.ClickException("not confirmed: nothing changed")


@main.command("status")
@click.option("--account", metavar="NAME", help="Only this LiveVox account [default: every one].")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status_cmd(account: str | None, as_json: bool) -> None:
    """Per LiveVox account: queue depth and oldest age per target, campaign, hold reason, rate
    budget, halt, batches."""
    with Runtime.build(load_settings(log=False)) as rt, refuse_bad_input():
        data = collect(rt, account)
    if as_json:
        echo_json(data)
        return
    for i, section in enumerate(data["accounts"]):
        if i:
            click.echo()
        _show_account(section)
    if len(data["accounts"]) > 1:
        click.echo(f"\nall accounts: batches: {_counts(data['batches'])}")


def _counts(by_status: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(by_status.items())) or "none"


def _show_account(data: dict[str, Any]) -> None:
    """One account's section of ``appendq status``."""
    name = data["account"]
    click.secho(f"account {name} (LiveVox client {data['client_name']})", bold=True)
    click.echo(f"{'target':<18} {'queued':>9} {'oldest':>9} {'campaign':>9}  hold reason")
    for row in data["targets"]:
        age = f"{row['oldest_age_s']:.0f}s" if row["oldest_age_s"] is not None else "-"
        click.echo(
            f"{row['target']:<18} {row['queued']:>9,} {age:>9} "
            f"{row['campaign_id'] or '-':>9}  {_why_waiting(row, name)}"
        )
    rate = data["rate"]
    click.echo(
        f"rate budget: {rate['remaining']} of {rate['max_calls']} calls per {rate['window_s']:g} s"
    )
    click.echo(f"batches: {_counts(data['batches'])}")
    if data.get("dry_run"):
        click.secho(
            f"DRY RUN: {data['dry_run']} builds and audits batches but makes no Append call",
            fg="yellow",
        )
    if data["halt"]:
        halt = data["halt"]
        click.secho(
            f"HALTED: no Append call for {halt['remaining_s']:.0f} s more: "
            f"{halt['reason']} (`appendq resume{_for(name)}` lifts it)",
            fg="red",
            err=False,
        )


def _for(account: str) -> str:
    """The ``--account`` of a command naming ``account`` (none for the default account)."""
    return "" if account == DEFAULT_ACCOUNT else f" --account {account}"


def _why_waiting(row: dict[str, Any], account: str) -> str:
    aside = row.get("set_aside")
    if aside:
        return (
            f"SET ASIDE ({aside['kind']}): {aside['reason']} "
            f"(`appendq targets clear{_for(account)}`)"
        )
    return str(row["hold_reason"] or "")


# -- retry ------------------------------------------------------------------------------------


@main.command("retry")
@click.option("--batch", "batch_id", type=ID, help="one batch to send again.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in RETRYABLE_STATUSES]),
    help="batches in this status (repeatable; default: every retryable status).",
)
@click.option("--service", "service_id", type=ID, help="batches of this LiveVox service.")
@click.option("--campaign", "campaign_id", type=ID, help="batches for this LiveVox campaign.")
@click.option(
    "--account",
    metavar="NAME",
    help="batches of this LiveVox account [default: every one]; with other filters.",
)
@click.option(
    "--since", type=IsoTime(), help="batches created at or after (ISO; APPENDQ_TIMEZONE)."
)
@click.option("--until", type=IsoTime(), help="batches created before (ISO; APPENDQ_TIMEZONE).")
@click.option(
    "--reason",
    required=True,
    help=f"why (recorded in the audit; one line, at most {retry.REASON_MAX} characters).",
)
@click.option("--actor", help="who, for the audit (default: operator:<login name>).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def retry_cmd(reason: str, actor: str | None, yes: bool, as_json: bool, **filters: Any) -> None:
    """Send failed, held, operator_hold, in_doubt, rejected, retry_wait or dry_run batches again:
    one batch, or every batch matching the filters. Shows what will be re-sent and asks first;
    recorded in the audit with who, when, why and what. Only batches still exactly as the preview
    showed them move: one that changed meanwhile (a tick sent it, say) is left alone and named,
    and the exit status is 1 ("preview again"); 2 is a usage error. --account keeps the retry to
    one LiveVox account's batches (a batch named by --batch needs none)."""
    if filters["service_id"] is not None and filters["campaign_id"] is not None:
        raise click.UsageError("give --service or --campaign, not both")
    if not reason.strip():
        raise click.UsageError("--reason must say why (it is recorded in the audit)")
    with refuse_bad_input():  # before anything is read: one line, exit 2
        reason = retry.check_reason(reason, "--reason")
        actor = retry.check_actor(actor or operator_actor(), "--actor")
    settings = load_settings()
    where = _retry_filter(settings, **filters)
    with Runtime.build(settings) as rt, refuse_bad_input():
        for name in where.accounts:  # one that is configured: nothing drains the others
            rt.accounts.get_account(name, "--account")
        result = _retry(rt, where, reason, actor, yes, as_json)
    if result is not None and result.left:
        raise click.exceptions.Exit(1)


def _retry_filter(
    settings: Settings,
    *,
    batch_id: int | None,
    statuses: tuple[str, ...],
    service_id: int | None,
    campaign_id: int | None,
    since: datetime | None,
    until: datetime | None,
    account: str | None,
) -> RetryFilter:
    where = RetryFilter(
        batch_id=batch_id,
        statuses=tuple(BatchStatus(s) for s in statuses),
        service_id=service_id,
        campaign_id=campaign_id,
        since=in_zone(since, settings.tz),
        until=in_zone(until, settings.tz),
        accounts=() if account is None else (account,),
    )
    if where.empty:
        raise click.UsageError(
            "give a filter (--batch, --status, --service, --campaign, --since, --until; "
            "--account alone is every batch of that account): appendq never retries "
            "everything by accident"
        )
    return where


def _retry(
    rt: Runtime, where: RetryFilter, reason: str, actor: str, yes: bool, as_json: bool
) -> RetryResult | None:
    """Preview, ask, then move only what is still as previewed (status and version)."""
    with rt.sessions() as session:
        preview = retry.preview_retry(session, where)
        session.rollback()  # no transaction left open while a human reads the preview
        if not preview:
            _nothing_to_retry(session, where.batch_id)
            return None
        _show_preview(preview, rt.settings.tz, as_json)
        records = sum(b.size for b in preview)
        _confirm(f"Send these {len(preview):,} batches ({records:,} records) again?", yes)
        seen = {b.id: b.seen() for b in preview}
        with session.begin():
            result = retry.retry(session, where, reason=reason, actor=actor, only=seen)
    log.info(
        "operator retry by %s: %d batches moved back to ready, %d left alone (%s)",
        actor,
        len(result.moved),
        len(result.left),
        reason,
        extra={
            "actor": actor,
            "batches": [b.id for b in result.moved],
            "left": [b.id for b in result.left],
        },
    )
    if as_json:
        echo_json({"preview": [b.to_dict() for b in preview], **result.to_dict()})
    else:
        _show_result(result, actor)
    return result


def _show_result(result: RetryResult, actor: str) -> None:
    moved = result.moved
    click.echo(
        f"moved {len(moved):,} batches ({sum(b.size for b in moved):,} records) back to ready, "
        f"as {actor}: {', '.join(str(b.id) for b in moved) or '-'}"
    )
    for left in result.left[:PREVIEW_ROWS]:
        click.echo(f"left alone: batch {left.id} {left.why}", err=True)
    if len(result.left) > PREVIEW_ROWS:
        click.echo(f"... and {len(result.left) - PREVIEW_ROWS:,} more left alone", err=True)


def _nothing_to_retry(session: Session, batch_id: int | None) -> None:
    if batch_id is not None:
        found = timeline.find_records(session, batch_id=batch_id, limit=1)
        if not found:
            raise click.ClickException(f"no batch {batch_id}")
        raise click.ClickException(
            f"batch {batch_id} is {found[0].batch_status} (or outside the filters): only "
            f"{', '.join(RETRYABLE_STATUSES)} batches can be retried"
        )
    click.echo("no batch matches: nothing changed")


def _show_preview(preview: Sequence[BatchSummary], tz: tzinfo, as_json: bool) -> None:
    doubtful = [b for b in preview if b.may_duplicate]
    if not as_json:
        click.echo(
            f"{'batch':>8}  {'account':<10} {'target':<18} {'status':<10} {'records':>8} "
            f"{'attempts':>8}  {'created':<23}  error"
        )
        for b in preview[:PREVIEW_ROWS]:
            click.echo(
                f"{b.id:>8}  {b.account:<10} {b.target:<18} {b.status:<10} {b.size:>8,} "
                f"{b.attempts:>8}  {b.created_at.astimezone(tz):{TIME_FORMAT}}  "
                f"{(b.error or '')[:60]}"
            )
        if len(preview) > PREVIEW_ROWS:
            click.echo(f"... and {len(preview) - PREVIEW_ROWS:,} more batches")
        if len(preview) >= retry.MAX_BATCHES:
            click.echo(f"(at most {retry.MAX_BATCHES:,} batches per retry: run again for more)")
    if doubtful:
        click.secho(
            f"WARNING: {len(doubtful)} of these batches ({sum(b.size for b in doubtful):,} "
            "records) are in_doubt or partly landed: their records may already be at LiveVox, "
            "and re-sending them may DUPLICATE them there (LiveVox does not dedupe).",
            fg="red",
            bold=True,
            err=as_json,
        )


# -- prune ------------------------------------------------------------------------------------


@main.command("prune")
@click.option(
    "--older-than-days",
    type=click.IntRange(min=0),
    help="finished batches last changed this many days ago or more "
    "[default: APPENDQ_RETENTION_DAYS; 0 keeps everything].",
)
@click.option("--chunk", default=prune.CHUNK, show_default=True, type=click.IntRange(1, 1000))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def prune_cmd(older_than_days: int | None, chunk: int, yes: bool) -> None:
    """Delete finished batches (appended, rejected, failed) older than the retention, with their
    records and events: whole days of records and events at once (dropping their partitions),
    the rest a chunk of batches per transaction. Then drop the payloads (personal data) of
    finished batches older than APPENDQ_PII_RETENTION_DAYS. Open batches are never deleted."""
    settings = load_settings()
    days = settings.retention_days if older_than_days is None else older_than_days
    if days <= 0:
        click.echo("retention is off (0 days): no batch pruned")
    else:
        with Runtime.build(settings) as rt:
            _prune(rt, settings, prune.cutoff_for(days), chunk, yes)
    with Runtime.build(settings) as rt:
        _drop_personal_data(rt, settings, yes)


def _prune(rt: Runtime, settings: Settings, cutoff: datetime, chunk: int, yes: bool) -> None:
    with rt.sessions() as session:
        plan = prune.preview_prune(session, cutoff)
    local = cutoff.astimezone(settings.tz)
    if plan.batches == 0:
        click.echo(f"no finished batch last changed before {local:{TIME_FORMAT}}: nothing to prune")
        return
    click.echo(
        f"{plan.batches:,} finished batches ({plan.records:,} records) last changed before "
        f"{local:{TIME_FORMAT}} will be deleted with their events"
    )
    _confirm("Delete them?", yes)
    try:
        done = prune.prune(rt.sessions, cutoff, chunk=chunk)
    except prune.PartitionBusy as exc:
        raise click.ClickException(str(exc)) from None
    dropped = f" ({done.partitions} daily partitions dropped)" if done.partitions else ""
    click.echo(
        f"deleted {done.batches:,} batches, {done.records:,} records, {done.events:,} events"
        f"{dropped}"
    )


def _drop_personal_data(rt: Runtime, settings: Settings, yes: bool) -> None:
    """The payloads of finished batches past APPENDQ_PII_RETENTION_DAYS (their metadata stays)."""
    if settings.pii_days <= 0:
        return
    cutoff = prune.cutoff_for(settings.pii_days)
    with rt.sessions() as session:
        plan = prune.preview_drop(session, cutoff)
    if plan.batches == 0:
        return
    local = cutoff.astimezone(settings.tz)
    click.echo(
        f"the payloads (personal data) of {plan.records:,} records in {plan.batches:,} finished "
        f"batches last changed before {local:{TIME_FORMAT}} will be dropped; the batches stay"
    )
    _confirm("Drop them?", yes)
    done = prune.drop_personal_data(rt.sessions, cutoff)
    click.echo(f"dropped the payloads of {done.records:,} records in {done.batches:,} batches")
