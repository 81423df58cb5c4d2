"""``appendq rotate-keys``: re-encrypt every stored payload under the current key (the first of
APPENDQ_DATA_KEYS), in bounded transactions, while the workers run (``appendq.batches.rekey``).
``--new-key`` prints a fresh key. The steps of a rotation are in the README, "Key management"."""

from __future__ import annotations

import time
from collections.abc import Callable

import click

from appendq import crypto
from appendq.batches import rekey
from appendq.cli.app import main
from appendq.cli.common import load_settings
from appendq.crypto import PayloadCipher, PayloadUnreadable
from appendq.runtime import Runtime

#: Seconds between two progress lines.
PROGRESS_S = 2.0


@main.command("rotate-keys")
@click.option(
    "--chunk",
    default=rekey.CHUNK,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="records per transaction.",
)
@click.option("--new-key", is_flag=True, help="Print a new key for APPENDQ_DATA_KEYS and stop.")
def rotate_keys_cmd(chunk: int, new_key: bool) -> None:
    """Re-encrypt every payload not under the current key (and encrypt those stored in clear
    before migration 0007), CHUNK records per transaction. Safe while workers run, to stop and
    to run again: it carries on with what is left."""
    if new_key:
        click.echo(crypto.new_key())
        return
    with Runtime.build(load_settings()) as rt:
        cipher = rt.cipher
        with rt.sessions() as session:
            before = rekey.census(session)
        _refuse_unknown(before, cipher)
        todo = before.stale(cipher)
        click.echo(f"current key {cipher.current}; stored payloads by key: {_by_key(before)}")
        report = rekey.RotateReport(left=before)
        if todo:
            click.echo(f"{todo:,} payloads to re-encrypt under key {cipher.current}")
            try:
                report = rekey.rotate(rt.sessions, cipher, chunk=chunk, progress=_progress(todo))
            except PayloadUnreadable as exc:
                raise click.ClickException(f"{exc}; nothing after it was re-encrypted") from None
    _summary(report, cipher)


def _refuse_unknown(census: rekey.Census, cipher: PayloadCipher) -> None:
    unknown = census.unknown(cipher)
    if unknown:
        raise click.ClickException(
            f"payloads under keys APPENDQ_DATA_KEYS does not hold ({_by_key(rekey.Census(unknown))}"
            "): put those keys back after the current one, then run again; nothing changed"
        )


def _by_key(census: rekey.Census) -> str:
    return ", ".join(f"{key} {n:,}" for key, n in sorted(census.by_key.items())) or "none"


def _progress(todo: int) -> Callable[[int], None]:
    last = [0.0]

    def show(done: int) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_S or done >= todo:
            last[0] = now
            click.echo(f"  {done:,} of {todo:,} re-encrypted")

    return show


def _summary(report: rekey.RotateReport, cipher: PayloadCipher) -> None:
    left = report.left.stale(cipher)
    click.echo(f"re-encrypted {report.rewritten:,} payloads in {report.passes} pass(es)")
    if left:
        raise click.ClickException(
            f"{left:,} payloads are still not under key {cipher.current} "
            f"({_by_key(report.left)}): rows locked meanwhile, or a process still encrypting "
            "with an old key first; run again once every process has the new APPENDQ_DATA_KEYS"
        )
    retired = report.left.retired(cipher)
    if retired:
        click.echo(
            f"every payload is under key {cipher.current}: keys {', '.join(retired)} may now "
            "be removed from APPENDQ_DATA_KEYS"
        )
    else:
        click.echo(f"every payload is under key {cipher.current}")
