"""``appendq audit``: what happened to a lead, read from the audit (``appendq.audit.timeline``);
``appendq audit --access-log``: who read it (``appendq.audit.access``). Every run of either is
written to the access log before anything is shown.

``--account`` is the LiveVox account (as everywhere in appendq); the lead's own account number
(a LiveVox record field) is ``--lead-account``. Any account name is taken, configured or not: the
audit outlives an account removed from APPENDQ_ACCOUNTS_FILE."""

from __future__ import annotations

import json
from datetime import datetime, tzinfo
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError

from appendq.audit import timeline
from appendq.audit.access import AccessEntry, operator_actor, read_log, record_access
from appendq.cli.app import main
from appendq.cli.common import ID, TIME_FORMAT, BadInput, IsoTime, echo_json, load_settings
from appendq.clock import in_zone
from appendq.db.models import RecordStatus
from appendq.errors import InvalidValue
from appendq.leads import check_text
from appendq.runtime import Runtime


@main.command("audit")
@click.option("--phone", help="phone1 of the record, in full (any format).")
@click.option("--account", metavar="NAME", help="the LiveVox account of the records.")
@click.option("--lead-account", help="the lead's account number (a LiveVox record field).")
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
@click.option(
    "--after",
    metavar="CURSOR",
    help="The next page: the cursor the previous page printed (same filters).",
)
@click.option(
    "--full-phones", is_flag=True, help="Phone numbers in full (else masked); the log says so."
)
@click.option(
    "--access-log",
    is_flag=True,
    help="Show the access log instead: who read personal data, when, with what filter "
    "(with --since, --until, --actor, --limit, --json).",
)
@click.option("--actor", help="With --access-log: only this actor (api:NAME, operator:LOGIN).")
@click.option("--json", "as_json", is_flag=True, help="Full detail, machine-readable.")
def audit_cmd(
    limit: int,
    as_json: bool,
    full_phones: bool,
    access_log: bool,
    actor: str | None,
    **where: Any,
) -> None:
    """What happened to a lead: each matching record, its status and its timeline (queued,
    batched, sent, outcome, operator retries with who and why). Filters combine (AND). Every
    run is written to the access log (operator:<login>, the filter with phones masked, how many
    records) before anything is shown; `--access-log` shows that log, newest first."""
    if access_log:
        _access_log(limit, as_json, actor, full_phones, where)
        return
    if actor is not None:
        raise click.UsageError("--actor goes with --access-log")
    if all(v is None or v == () for v in where.values()):
        raise click.UsageError(
            "give at least one filter: --phone, --account, --lead-account, --record, --batch, "
            "--campaign, --service, --status, --since or --until"
        )
    settings = load_settings(log=False)
    asked = {_FILTER_NAMES.get(k, k): v for k, v in where.items()}
    with Runtime.build(settings) as rt:
        page = _find(rt, limit, full_phones, **where)
        found = page.records
        _logged(rt, "audit", {**asked, "limit": limit, "full_phones": full_phones}, len(found))
        known = where["account"] is None or where["account"] in rt.accounts
    if as_json:
        echo_json({**timeline.document(found), "next": page.next})
        return
    shown: set[int] = set()
    for rec in found:
        _print_record(rec, settings.tz, shown)
    more = f" (more: the same command with --after {page.next})" if page.next else ""
    if not known:
        more += f" (account {where['account']} is not in APPENDQ_ACCOUNTS_FILE)"
    click.echo(f"{len(found):,} record{'' if len(found) == 1 else 's'}{more}")


#: Option names as the access log records a CLI filter (as the HTTP API names them).
_FILTER_NAMES = {
    "record_id": "record",
    "batch_id": "batch",
    "campaign_id": "campaign",
    "service_id": "service",
    "statuses": "status",
}


def _logged(rt: Runtime, action: str, where: dict[str, Any], records: int) -> None:
    """The access-log row of this run, before anything is shown (none shown if it fails)."""
    where = {k: v for k, v in where.items() if v is not False}
    try:
        record_access(
            rt.sessions,
            actor=operator_actor(),
            channel="cli",
            action=action,
            where=where,
            records=records,
        )
    except SQLAlchemyError as exc:
        raise click.ClickException(
            f"this read could not be written to the access log ({type(exc).__name__}): nothing "
            "is shown (is the database migrated? `appendq migrate`)"
        ) from None


def _find(
    rt: Runtime,
    limit: int,
    full_phones: bool,
    *,
    statuses: tuple[str, ...],
    since: datetime | None,
    until: datetime | None,
    account: str | None,
    lead_account: str | None,
    **keys: Any,
) -> timeline.AuditPage:
    """The matching records; a filter that cannot be asked is one line and exit 2."""
    settings = rt.settings
    with rt.sessions() as session:
        try:
            return timeline.find_page(
                session,
                **keys,
                account=check_text(lead_account, "lead_account", max_len=timeline.ACCOUNT_MAX),
                livevox_account=_livevox_account(account),
                status=statuses,
                since=in_zone(since, settings.tz),
                until=in_zone(until, settings.tz),
                region=settings.default_region,
                limit=limit,
                full_phones=full_phones,
            )
        except ValueError as exc:  # InvalidValue: a filter that cannot be asked
            raise BadInput(str(exc)) from None


def _livevox_account(account: str | None) -> tuple[str, ...]:
    """``--account`` checked; a lead's account number given there is pointed to --lead-account."""
    try:
        return timeline.livevox_accounts(account)
    except InvalidValue as exc:
        hint = "--account is the LiveVox account; a lead's account number is --lead-account"
        raise InvalidValue(exc.field, f"{exc.message} ({hint})") from None


def _print_record(rec: timeline.RecordAudit, tz: tzinfo, shown: set[int]) -> None:
    """One record and its timeline; a batch event's reason is printed the first time only
    (``shown``: the events printed so far), so that a batch's records do not repeat it."""
    click.secho(
        f"record {rec.record_id}  {rec.target}@{rec.livevox_account}  phone {rec.phone1}  "
        f"account {rec.account or '-'}",
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


# -- the access log ----------------------------------------------------------------------------


def _access_log(
    limit: int, as_json: bool, actor: str | None, full_phones: bool, where: dict[str, Any]
) -> None:
    """``--access-log``: the log's rows, newest first, within --since/--until, by --actor."""
    since, until, after = where.pop("since"), where.pop("until"), where.pop("after")
    if full_phones or any(v is not None and v != () for v in where.values()):
        raise click.UsageError(
            "--access-log takes --since, --until, --actor, --limit, --after and --json"
        )
    settings = load_settings(log=False)
    asked = {"since": since, "until": until, "actor": actor, "limit": limit}
    with Runtime.build(settings) as rt:
        with rt.sessions() as session:
            try:
                found, cursor = read_log(
                    session,
                    since=in_zone(since, settings.tz),
                    until=in_zone(until, settings.tz),
                    actor=actor,
                    limit=limit,
                    after=after,
                )
            except InvalidValue as exc:
                raise BadInput(str(exc)) from None
        _logged(rt, "access_log", asked, len(found))
    if as_json:
        echo_json([e.to_dict() for e in found])
        if cursor:
            click.echo(f"more: the same command with --after {cursor}", err=True)
        return
    for entry in found:
        _print_access(entry, settings.tz)
    more = f" (more: the same command with --after {cursor})" if cursor else ""
    click.echo(f"{len(found):,} read{'' if len(found) == 1 else 's'} of personal data{more}")


def _print_access(entry: AccessEntry, tz: tzinfo) -> None:
    what = json.dumps(entry.filter, separators=(",", ":"), default=str)
    click.echo(
        f"{entry.at.astimezone(tz):{TIME_FORMAT}}  {entry.actor:<28} {entry.channel:<4} "
        f"{entry.action:<10} {entry.records:>7,}  {what}"
    )
