"""Key rotation (``appendq rotate-keys``): every stored payload re-encrypted under the current key
(the first of APPENDQ_DATA_KEYS), and those stored in clear before migration 0007 encrypted.

It walks the records in id order, ``CHUNK`` records per transaction (their rows locked, SKIP
LOCKED), while the drain goes on: a record claimed meanwhile is written under the current key
already (every process must have the new key list first: see the README, "Key management"). A
pass that skipped locked rows is followed by another; stopped at any point, the next run carries
on with what is left (done rows no longer match).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from appendq.batches.store import BatchStore
from appendq.crypto import PayloadCipher
from appendq.db.models import Record

log = logging.getLogger(__name__)

#: Records per transaction.
CHUNK = 1000
#: Passes over the table at most (the later ones only for rows that were locked).
PASSES = 3
#: How the census names payloads stored in clear (before migration 0007).
CLEAR = "clear"


@dataclass(frozen=True)
class Census:
    """Stored payloads by key id (``CLEAR``: not encrypted yet)."""

    by_key: dict[str, int]

    def stale(self, cipher: PayloadCipher) -> int:
        """Payloads not under the current key."""
        return sum(n for key, n in self.by_key.items() if key != cipher.current)

    def unknown(self, cipher: PayloadCipher) -> dict[str, int]:
        """Payloads under keys the cipher does not hold: they cannot be re-encrypted."""
        held = {*cipher.key_ids, CLEAR}
        return {key: n for key, n in self.by_key.items() if key not in held}

    def retired(self, cipher: PayloadCipher) -> list[str]:
        """Configured keys that no stored payload needs any more."""
        return [key for key in cipher.key_ids[1:] if not self.by_key.get(key)]


def census(session: Session) -> Census:
    """Count the stored payloads by key (one scan of the records)."""
    rows = session.execute(
        select(Record.payload_key, func.count())
        .where(Record.payload_enc.is_not(None))
        .group_by(Record.payload_key)
    ).all()
    by_key = {str(key): int(n) for key, n in rows}
    clear = session.scalar(select(func.count()).where(Record.legacy_payload.is_not(None)))
    if clear:
        by_key[CLEAR] = int(clear)
    return Census(by_key)


@dataclass
class RotateReport:
    rewritten: int = 0
    passes: int = 0
    left: Census = field(default_factory=lambda: Census({}))


def rotate(
    sessions: sessionmaker[Session],
    cipher: PayloadCipher,
    *,
    chunk: int = CHUNK,
    progress: Callable[[int], None] | None = None,
) -> RotateReport:
    """Re-encrypt every stale payload, ``chunk`` per transaction; ``progress`` gets the running
    total after each one. ``PayloadUnreadable`` (naming the record) stops it where a payload
    does not decrypt."""
    report = RotateReport()
    while report.passes < PASSES:
        report.passes += 1
        done = _one_pass(sessions, cipher, chunk, report.rewritten, progress)
        report.rewritten += done
        with sessions() as session:
            report.left = census(session)
        if done == 0 or report.left.stale(cipher) == 0:
            break
    return report


def _one_pass(
    sessions: sessionmaker[Session],
    cipher: PayloadCipher,
    chunk: int,
    before: int,
    progress: Callable[[int], None] | None,
) -> int:
    done, after = 0, None
    while True:
        with sessions() as session, session.begin():
            count, last = BatchStore(session, "rotate-keys").reseal_payloads(cipher, after, chunk)
        if count == 0:
            return done
        done, after = done + count, last
        log.debug("re-encrypted %d payloads under key %s", count, cipher.current)
        if progress is not None:
            progress(before + done)
