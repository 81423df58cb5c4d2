"""``appendq enqueue FILE``: validate a lead file and queue its good records for LiveVox.

Only builds Settings and a Producer, streams the file through ``Producer.enqueue_stream`` and
reports: errors on stderr (``row N: FIELD: message``), a summary or one JSON receipt on stdout.
Duplicates (APPENDQ_DEDUPE) are counted in the summary and listed in the JSON receipt; they are
not errors.

Stopping short is always said, never silent: Ctrl-C stops after the row being handled
(``appendq.cli.enqueue_stop``) and the summary, or the JSON document, still lists every refused
row up to there with the last row handled (exit 130); a file whose reading had to stop (broken
CSV quoting, a workbook, UTF-16 without a byte order mark: an error with field ``file``) exits 4.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import click

from appendq.cli.app import main
from appendq.cli.common import ID, load_settings, refuse_bad_input
from appendq.cli.enqueue_stop import CtrlC
from appendq.errors import ConfigError, FieldError
from appendq.keys import DEFAULT_ACCOUNT
from appendq.settings import Settings
from appendq.target import Target
from producer import (
    DEFAULT_CHUNK,
    EnqueueInterrupted,
    Producer,
    Receipt,
    connect,
    format_for,
    iter_records,
)
from producer.files import FILE_LEVEL, STOPPED, Item

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar

EXIT_OK = 0
EXIT_ALL_REFUSED = 1
EXIT_USAGE = 2  # click's own code for usage errors
EXIT_FAILED = 3
EXIT_INCOMPLETE = 4  # the file could not be read to its end: an error with field "file" says where
EXIT_INTERRUPTED = 130

#: Errors printed on stderr; ``--json`` always carries all of them.
MAX_PRINTED_ERRORS = 50


@main.command("enqueue")
@click.argument(
    "file", type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path)
)
@click.option(
    "--service",
    type=ID,
    metavar="ID",
    help="LiveVox service id: records go to today's campaign of this service.",
)
@click.option(
    "--campaign",
    type=ID,
    metavar="ID",
    help="LiveVox campaign id pinned by an operator.",
)
@click.option(
    "--account",
    metavar="NAME",
    help="The LiveVox account (APPENDQ_ACCOUNTS_FILE) whose service or campaign this is "
    "[default: default].",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl"]),
    help="Input format; default from the extension (.csv, .jsonl, .ndjson). "
    "Needed when FILE is - (standard input).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON receipt on stdout instead of the summary.",
)
@click.option(
    "--chunk",
    type=click.IntRange(min=1),
    default=DEFAULT_CHUNK,
    show_default=True,
    help="Records validated and pushed to Redis at a time.",
)
@click.pass_context
def enqueue_command(
    ctx: click.Context,
    file: Path,
    service: int | None,
    campaign: int | None,
    account: str | None,
    fmt: str | None,
    as_json: bool,
    chunk: int,
) -> None:
    """Queue the leads of FILE for a LiveVox service or campaign.

    FILE is a CSV file whose header names LiveVox fields (phone1, phone2, account, firstName, ...;
    several phone2 numbers separated by ';') or a JSON Lines file of one object per line; - reads
    standard input. Bad records are reported with their row and field; good ones still go in. A
    record whose phone1 (or account, per APPENDQ_DEDUPE) was already accepted for the same target
    today is a duplicate: audited, never sent, counted in the summary.

    Ctrl-C stops after the row being handled; the summary still lists every refused row up to
    there. Rows are reported by the line they start on (a quoted CSV cell may hold line breaks).

    Exit status: 0 records queued (or the file held none, or only duplicates and bad records), 1
    every record was refused, 2 usage error, 3 configuration or Redis failure (the message says
    which rows were queued), 4 the file could not be read to its end (the error with field
    "file" says from which line), 130 interrupted by Ctrl-C.
    """
    target = _target(service, campaign)
    try:
        kind = format_for(file, fmt)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="FILE") from None
    settings = _settings()
    job = _Job(target, file, kind, chunk, as_json, settings.import_max_line_bytes)
    with refuse_bad_input(), _connect(settings, account) as producer:  # e.g. too many targets: 2
        outcome = _run(producer, job)
    _print_errors(outcome.receipt.errors)
    _print_outcome(outcome, as_json)
    ctx.exit(exit_code(outcome.receipt, interrupted=outcome.interrupted))


def exit_code(receipt: Receipt, *, interrupted: bool = False) -> int:
    """130 when interrupted; 4 when the file could not be read to its end; else 0 when something
    was queued or there was nothing to queue; 1 when all was refused.

    A duplicate is not refused: it was handled as asked (audited, not sent again)."""
    if interrupted:
        return EXIT_INTERRUPTED
    if stopped_at(receipt) is not None:
        return EXIT_INCOMPLETE
    if receipt.accepted == 0 and not receipt.duplicates and receipt.rejected > 0:
        return EXIT_ALL_REFUSED
    return EXIT_OK


def stopped_at(receipt: Receipt) -> int | None:
    """The line after which the file was not read (its error has field ``file``), or None."""
    for error in receipt.errors:
        if error.index == FILE_LEVEL and error.field == STOPPED:
            return error.row if error.row is not None else 0
    return None


@dataclass(frozen=True)
class _Job:
    target: Target
    file: Path
    kind: str
    chunk: int
    as_json: bool
    max_line_bytes: int


@dataclass(frozen=True)
class _Outcome:
    """The receipt of an import that ran, whether Ctrl-C stopped it, and the starting line of the
    last row handed to the producer."""

    receipt: Receipt
    interrupted: bool
    last_row: int | None


def _target(service: int | None, campaign: int | None) -> Target:
    if (service is None) == (campaign is None):
        raise click.UsageError("give exactly one of --service ID or --campaign ID")
    if service is not None:
        return Target("service", service)
    assert campaign is not None
    return Target("campaign", campaign)


def _settings() -> Settings:
    try:
        return load_settings()
    except click.ClickException as exc:
        raise _Failed(exc.message) from None


def _connect(settings: Settings, account: str | None) -> Producer:
    """The producer of ``account``: an unknown one is a usage error (exit 2), a bad accounts
    file a configuration failure (exit 3)."""
    try:
        return connect(settings, account=account)
    except ConfigError as exc:
        raise _Failed(str(exc)) from None


class _Failed(click.ClickException):
    """Could not run at all; exit 3, because exit 1 means "every record refused" here."""

    exit_code = EXIT_FAILED


def _run(producer: Producer, job: _Job) -> _Outcome:
    """Stream FILE through the producer, stopping between rows on Ctrl-C; when Redis fails (or a
    second Ctrl-C stops at once), say what was queued and exit."""
    ctrl = CtrlC()
    try:
        with _open(job.file) as stream, _progress(stream) as bar, ctrl.installed():
            rows = iter_records(ctrl.watch(stream), job.kind, max_line_bytes=job.max_line_bytes)
            items = ctrl.follow(bar.follow(rows))
            receipt = producer.enqueue_stream(
                job.target, items, chunk=job.chunk, progress=bar.advance
            )
    except EnqueueInterrupted as exc:
        _print_errors(exc.receipt.errors)
        if job.as_json:
            document = {**exc.receipt.to_dict(), "error": str(exc)}
            click.echo(json.dumps({**document, **_ending(False, exc.last_row, complete=False)}))
        click.echo(f"appendq: {exc}", err=True)
        raise click.exceptions.Exit(EXIT_FAILED) from None
    except KeyboardInterrupt as exc:
        notes = getattr(exc, "__notes__", []) or ["interrupted"]
        for note in notes:
            click.echo(f"appendq: {note}", err=True)
        if job.as_json:  # what the producer had when the second Ctrl-C came, refused rows too
            partial = getattr(exc, "receipt", None)
            found = partial.to_dict() if partial is not None else {"target": str(job.target)}
            document = {**found, "error": "; ".join(notes)}
            click.echo(json.dumps({**document, **_ending(True, None, complete=False)}))
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
    return _Outcome(receipt, ctrl.stopped, ctrl.last_row)


def _ending(interrupted: bool, last_row: int | None, *, complete: bool) -> dict[str, Any]:
    """The JSON document's account of how far the import went."""
    return {"complete": complete, "interrupted": interrupted, "last_row": last_row}


@contextlib.contextmanager
def _open(file: Path) -> Iterator[BinaryIO]:
    if str(file) == "-":
        yield sys.stdin.buffer
        return
    with file.open("rb") as stream:
        yield stream


class _Bar:
    """A progress bar over the bytes of FILE read so far; does nothing when ``bar`` is None."""

    def __init__(self, stream: BinaryIO, bar: ProgressBar[int] | None) -> None:
        self.stream = stream
        self.bar = bar

    def advance(self, _done: int) -> None:
        if self.bar is not None:
            self.bar.update(self.stream.tell() - self.bar.pos)

    def close(self) -> None:
        """Finish the bar (once), so that later lines on stderr start on a line of their own."""
        bar, self.bar = self.bar, None
        if bar is not None:
            bar.__exit__(None, None, None)

    def follow(self, items: Iterable[Item]) -> Iterator[Item]:
        """Pass ``items`` through, closing the bar once the whole file has been read."""
        yield from items
        self.advance(0)
        self.close()


@contextlib.contextmanager
def _progress(stream: BinaryIO) -> Iterator[_Bar]:
    """On a terminal and for a regular file, a bar on stderr; elsewhere a silent stand-in."""
    size = _size(stream)
    if size is None or not _stderr_is_tty():
        yield _Bar(stream, None)
        return
    bar: ProgressBar[int] = click.progressbar(length=size, label="enqueue", file=sys.stderr)
    progress = _Bar(stream, bar.__enter__())
    try:
        yield progress
    finally:
        progress.close()


def _size(stream: BinaryIO) -> int | None:
    """Size of a regular file (also when it is standard input), else None."""
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _stderr_is_tty() -> bool:
    return sys.stderr.isatty()


def _print_errors(errors: list[FieldError]) -> None:
    for error in errors[:MAX_PRINTED_ERRORS]:
        click.echo(str(error), err=True)
    if len(errors) > MAX_PRINTED_ERRORS:
        click.echo(
            f"... and {len(errors) - MAX_PRINTED_ERRORS:,} more (--json lists them all)", err=True
        )


def _print_outcome(outcome: _Outcome, as_json: bool) -> None:
    receipt = outcome.receipt
    if as_json:
        complete = not outcome.interrupted and stopped_at(receipt) is None
        ending = _ending(outcome.interrupted, outcome.last_row, complete=complete)
        click.echo(json.dumps({**receipt.to_dict(), **ending}))
        return
    click.echo(summary(receipt, interrupted=outcome.interrupted, last_row=outcome.last_row))
    if outcome.interrupted:
        click.echo(
            "appendq: the rows after it were not read; the rows refused up to there are reported "
            "above",
            err=True,
        )


def summary(receipt: Receipt, *, interrupted: bool = False, last_row: int | None = None) -> str:
    """``accepted 24,998 records for service:1001; 1 duplicate; 2 rejected`` (no duplicate part
    when there were none), then where the import stopped short, if it did: ``interrupted
    (Ctrl-C) after the row at line 52`` or ``reading stopped at line 7``."""
    noun = "record" if receipt.accepted == 1 else "records"
    where = (
        receipt.target
        if receipt.account == DEFAULT_ACCOUNT
        else f"{receipt.account} {receipt.target}"
    )
    parts = [f"accepted {receipt.accepted:,} {noun} for {where}"]
    if receipt.duplicates:
        count = len(receipt.duplicates)
        parts.append(f"{count:,} duplicate" + ("" if count == 1 else "s"))
    parts.append(f"{receipt.rejected:,} rejected")
    if interrupted:
        where = "before the first row" if last_row is None else f"after the row at line {last_row}"
        parts.append(f"interrupted (Ctrl-C) {where}")
    elif (line := stopped_at(receipt)) is not None:
        parts.append(f"reading stopped at line {line}")
    return "; ".join(parts)
