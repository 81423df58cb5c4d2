"""``appendq audit``: what happened to a lead, read from the audit (``appendq.audit.timeline``)."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

import click

from appendq.audit import timeline
from appendq.cli.app import main
from appendq.cli.common import ID, TIME_FORMAT, BadInput, IsoTime, echo_json, load_settings, runtime
from appendq.clock import in_zone
from appendq.db.models import RecordStatus
from appendq.settings import Settings


@main.command("audit")
@click.option("--phone", help="phone1 of the record, in full (any format).")
@click.option("--account", help="account of the record.")
@click.option("--record", "record_id", help="a record id from a receipt.")
@click.option("--batch", "batch_id", type=ID, help="a batch id.")
@click.option("--campaign", "campaign_id", type=ID, help="a LiveVox campaign id.")
@click.option("--service", "service_id", type=ID, help="a LiveVox service id.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in RecordStatus]),
    help="effective status of the record (repeatable).",
)
@click.option("--since", type=IsoTime(), help="enqueued at or after (ISO; APPENDQ_TIMEZONE).")
@click.option("--until", type=IsoTime(), help="enqueued before (ISO; APPENDQ_TIMEZONE).")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="Full detail, machine-readable.")
def audit_cmd(limit: int, as_json: bool, **where: Any) -> None:
    """What happened to a lead: each matching record, its status and its timeline (queued,
    batched, sent, outcome, operator retries with who and why). Filters combine (AND)."""
    if all(v is None or v == () for v in where.values()):
        raise click.UsageError(
            "give at least one filter: --phone, --account, --record, --batch, --campaign, "
            "--service, --status, --since or --until"
        )
    settings = load_settings(log=False)
    found = _find(settings, limit, **where)
    if as_json:
        echo_json(timeline.document(found))
        return
    shown: set[int] = set()
    for rec in found:
        _print_record(rec, settings.tz, shown)
    more = " (the limit: narrow the filters or raise --limit)" if len(found) == limit else ""
    click.echo(f"{len(found):,} record{'' if len(found) == 1 else 's'}{more}")


def _find(
    settings: Settings,
    limit: int,
    *,
    statuses: tuple[str, ...],
    since: datetime | None,
    until: datetime | None,
    **keys: Any,
) -> list[timeline.RecordAudit]:
    """The matching records; a filter that cannot be asked is one line and exit 2."""
    with runtime(settings) as rt, rt.sessions() as session:
        try:
            return timeline.find_records(
                session,
                **keys,
                status=statuses,
                since=in_zone(since, settings.tz),
                until=in_zone(until, settings.tz),
                region=settings.default_region,
                limit=limit,
            )
        except ValueError as exc:  # InvalidValue: a filter that cannot be asked
            raise BadInput(str(exc)) from None


def _print_record(rec: timeline.RecordAudit, tz: tzinfo, shown: set[int]) -> None:
    """One record and its timeline; a batch event's reason is printed the first time only
    (``shown``: the events printed so far), so that a batch's records do not repeat it."""
    click.secho(
        f"record {rec.record_id}  {rec.target}  phone {rec.phone1}  account {rec.account or '-'}",
        bold=True,
    )
    click.echo(
        f"  {rec.status.upper()}  batch {rec.batch_id} #{rec.position}  "
        f"campaign {rec.campaign_id or '-'}  (batch {rec.batch_status}, "
        f"{rec.attempts} attempt{'' if rec.attempts == 1 else 's'})"
    )
    if rec.reason:
        click.echo(f"  why: {rec.reason}")
    for t in rec.timeline:
        where = f"batch {t.batch_id}" if t.batch_id is not None else ""
        why = t.reason or ""
        if t.scope == "batch" and t.event_id is not None:
            if t.event_id in shown and why:
                why = "(as above)"
            shown.add(t.event_id)
        click.echo(
            f"    {t.at.astimezone(tz):{TIME_FORMAT}}  {t.step:<10} {where:<12} {t.actor:<26} "
            f"{why}".rstrip()
        )
    click.echo()
