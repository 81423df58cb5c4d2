"""Settle ``in_doubt`` batches by reading what LiveVox holds.

LiveVox takes no idempotency key, so a batch whose answer was lost may or may not have landed.
Once its call is long over, read the campaign's transaction list (paged; only in-doubt batches pay
for it) and match the batch's records by account and phone1, or by phone1 alone where a record has
no account (phones compared as digits, without a leading NANP country code 1):

- all present  -> appended (never sent twice);
- none present -> ready (sent again: nothing landed);
- some present -> held for an operator, with the evidence (``appendq retry`` decides).

Matching can be fooled by the same account and phone appended earlier the same day through another
batch; the dedupe on phone1 (the default) keeps that from happening within appendq. An exact match
would need the record id to ride in an ``extraN`` field, which customers use for their own data.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from appendq import store
from appendq.db.models import BatchStatus
from appendq.livevox import Transaction
from appendq.store import BatchView, RecordRef

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evidence:
    present: list[RecordRef]
    missing: list[RecordRef]
    transactions_read: int


class TransactionSource(Protocol):
    """What ``gather`` needs of a client: ``LiveVoxClient`` is one."""

    def transactions(self, campaign_id: int, /) -> Iterable[Transaction]: ...


def canonical_phone(phone: str) -> str:
    """A phone number in the one form both sides are compared in: its digits, without the NANP
    country code (11 digits starting with 1). So "+1 212 555 1234", "12125551234" and
    "2125551234" are one number, and "+447911123456" is "447911123456" as LiveVox may hold it."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    if len(digits) == 11 and digits.startswith("1"):
        return digits[1:]
    return digits


def gather(client: TransactionSource, campaign_id: int, records: list[RecordRef]) -> Evidence:
    """Which records of the batch the campaign holds: a record with an account matches a
    transaction of that account whose first phone (phone1) is its phone1; one without, any
    transaction whose first phone is its phone1. Other phones (phone2) never match: another
    lead's phone2 may well be this lead's phone1. Phones are compared in ``canonical_phone``
    form, since LiveVox may hold a number in another form than the one sent."""
    by_account: dict[str, set[str]] = {}
    phones: set[str] = set()
    read = 0
    for tx in client.transactions(campaign_id):
        read += 1
        if not tx.phones:
            continue
        first = canonical_phone(tx.phones[0])
        if not first:
            continue
        phones.add(first)
        if tx.account:
            by_account.setdefault(tx.account, set()).add(first)

    def held(record: RecordRef) -> bool:
        phone1 = canonical_phone(record.phone1)
        if not phone1:
            return False
        if record.account:
            return phone1 in by_account.get(record.account, ())
        return phone1 in phones

    present = [r for r in records if held(r)]
    ids = {r.id for r in present}
    return Evidence(present, [r for r in records if r.id not in ids], read)


def verdict(batch: BatchView, evidence: Evidence) -> tuple[BatchStatus, str, str | None]:
    """(status, reason, error_kind) for a reconciled batch."""
    found, total = len(evidence.present), len(evidence.present) + len(evidence.missing)
    where = f"campaign {batch.campaign_id}'s transaction list ({evidence.transactions_read} read)"
    if total and found == total:
        return BatchStatus.APPENDED, f"reconciled: all {total} records found in {where}", None
    if found == 0:
        return (
            BatchStatus.READY,
            f"reconciled: none of the {total} records found in {where}; sending again",
            None,
        )
    return (
        BatchStatus.HELD,
        f"reconciled: {found} of {total} records found in {where}; an operator must decide "
        "(`appendq retry` re-sends the whole batch)",
        store.OPERATOR_HOLD,
    )


def evidence_detail(evidence: Evidence) -> dict[str, object]:
    return {
        "present": len(evidence.present),
        "missing": len(evidence.missing),
        "missing_ids": [str(r.id) for r in evidence.missing[:100]],
        "transactions_read": evidence.transactions_read,
    }
