"""Settle ``in_doubt`` batches by reading what LiveVox holds: pure decisions over evidence.

LiveVox takes no idempotency key, so a batch whose answer was lost may or may not have landed.
Once its call is over, read the campaign's transaction list (paged; only in-doubt batches pay for
it) and match the batch's records by account and phone1, or by phone1 alone where a record has no
account (phones compared in ``canonical_phone`` form; phone2 never matches).

**Only what could have come from this batch counts** (issue 8, race 4). The same key (account +
phone1, or phone1 alone) may have reached the campaign through another batch: another target
feeding the same campaign (a pinned ``campaign:ID`` and the ``service:ID`` that resolves to it),
or the day before. So for each key the list must show *more* transactions than the other batches
of the campaign account for: records of appended batches count as landed; records of sending,
in_doubt or partly-landed batches may or may not have landed. A record whose presence depends on
whether another in-doubt batch landed is *ambiguous*: the batch is operator_hold.

**Absence is decided on phone1 alone.** How LiveVox echoes ``account`` is unconfirmed (dropped,
normalised): a record not matched under its account whose phone1 the list shows more often than
the other batches' landed records account for is ambiguous (held), never missing.

**"None present" is evidence only when calibrated** (issue 9). A list may not show appended
records at all (unknown phone key, ``validOnly``, a lag): "none of the batch is in the list"
proves nothing until the same read shows records known to have landed. The calibration batch is
the *youngest* batch of the campaign (any target) that LiveVox answered 204 — the one a lagging
list is likeliest to miss. All its records must be present (by the same counting) in the same
read. Then "none present" sends the batch again; otherwise it is operator_hold, with the
evidence, and the audit says why (no calibration batch yet; or it is not shown). While the
calibration batch is younger than the wait below, the batch is looked at again instead. Seeing a
batch answered *before* this one's answer proves only that the list's lag is shorter than that
batch's age when a read first showed it (remembered: ``Keys.calibration_seen``): so "none
present" is believed only once this batch's answer is at least that old, and looked at again
until then (a lagging list must not turn a batch that landed into a second send).

**The late-landing wait** (issue 8, "Also close"): a request that stalled inside LiveVox may land
after the client gave up on it. "None present" is read only once the call is over for sure:

- LiveVox *answered* (500, 503, 202 ...): its work on the call ended with the answer; reconciled
  after APPENDQ_ANSWERED_SETTLE_S (5 s), enough for the list to show a record that landed before
  the answer (the settle must exceed the list's lag, which ``appendq doctor`` can show);
- a timeout, a dropped connection, a gateway's 502/504, a process that died mid-call: LiveVox
  may still hold the request, so reconciled one whole call deadline (connect + read timeouts +
  grace, 70 s by default) after the batch went in_doubt, i.e. two deadlines after it was sent:
  LiveVox's own request timeout is well inside that, and a calibration batch answered after it
  (one of another target) must show too.

A verdict of "none present" by a list that cannot show phones (entries without a readable phone)
is never taken: the batch is held, with the count of unreadable entries.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from appendq.batches.history import Calibration, KnownRecord
from appendq.batches.views import BatchView, RecordRef
from appendq.db.models import BatchStatus
from appendq.livevox.classify import canonical_phone
from appendq.livevox.client import Transaction

__all__ = [
    "Evidence",
    "ListCounts",
    "TransactionSource",
    "Verdict",
    "canonical_phone",
    "evidence_detail",
    "gather",
    "match",
    "read_list",
    "verdict",
]

log = logging.getLogger(__name__)

Key = tuple[str | None, str]  # (account or None, canonical phone1)


class TransactionSource(Protocol):
    """What ``gather`` needs of a client: ``LiveVoxClient`` is one."""

    def transactions(self, campaign_id: int, /) -> Iterable[Transaction]: ...


@dataclass(frozen=True)
class ListCounts:
    """One read of a transaction list, counted: per (account, phone1) and per phone1."""

    by_account: Counter[Key] = field(default_factory=Counter)
    by_phone: Counter[str] = field(default_factory=Counter)
    read: int = 0
    #: entries without a readable phone: the list can't prove a record absent
    unreadable: int = 0

    def shown(self, key: Key) -> int:
        account, phone = key
        return self.by_account[key] if account else self.by_phone[phone]


def read_list(client: TransactionSource, campaign_id: int) -> ListCounts:
    by_account: Counter[Key] = Counter()
    by_phone: Counter[str] = Counter()
    read = unreadable = 0
    for tx in client.transactions(campaign_id):
        read += 1
        first = canonical_phone(tx.phones[0]) if tx.phones else ""
        if not first:
            unreadable += 1
            continue
        by_phone[first] += 1
        if tx.account:
            by_account[(tx.account, first)] += 1
    return ListCounts(by_account, by_phone, read, unreadable)


def key_of(phone1: str, account: str | None) -> Key:
    return (account or None, canonical_phone(phone1))


def _others(known: Iterable[KnownRecord], key: Key) -> tuple[int, int]:
    """(landed, maybe) records of other batches that a transaction of ``key`` may stand for:
    for an account key those with that account and phone1; for a phone1-only key, every
    record with that phone1 (any account)."""
    landed = maybe = 0
    account, phone = key
    for rec in known:
        if canonical_phone(rec.phone1) != phone or (account and rec.account != account):
            continue
        if rec.landed:
            landed += 1
        else:
            maybe += 1
    return landed, maybe


@dataclass(frozen=True)
class Evidence:
    present: list[RecordRef]
    missing: list[RecordRef]
    transactions_read: int
    #: present only if another in-doubt batch did not land (or the reverse): can't tell
    ambiguous: list[RecordRef] = field(default_factory=list)
    unreadable: int = 0
    #: the calibration batch, and whether all its records were shown (None: no such batch)
    calibration: Calibration | None = None
    calibrated: bool = False
    #: seconds since this batch's answer came (or was lost)
    answer_age_s: float | None = None
    #: the list's lag is at most this (the calibration batch's age when the list first showed
    #: it): a record that landed longer ago than that would show
    lag_bound_s: float | None = None


def match(
    counts: ListCounts, records: Sequence[RecordRef], known: Sequence[KnownRecord]
) -> tuple[list[RecordRef], list[RecordRef], list[RecordRef]]:
    """(present, missing, ambiguous) records of a batch, counting per key what other batches
    account for (see the module docstring)."""
    groups: dict[Key, list[RecordRef]] = {}
    for rec in records:
        groups.setdefault(key_of(rec.phone1, rec.account), []).append(rec)
    present: list[RecordRef] = []
    missing: list[RecordRef] = []
    ambiguous: list[RecordRef] = []
    for key, group in groups.items():
        if not key[1]:
            missing += group
            continue
        landed, maybe = _others(known, key)
        shown = counts.shown(key)
        sure = min(max(shown - landed - maybe, 0), len(group))
        possible = min(max(shown - landed, 0), len(group))
        present += group[:sure]
        ambiguous += group[sure:possible]
        missing += group[possible:]
    missing, more = _shown_by_phone(counts, missing, present + ambiguous, known)
    return _ordered(present), _ordered(missing), _ordered(ambiguous + more)


def _shown_by_phone(
    counts: ListCounts,
    missing: list[RecordRef],
    matched: list[RecordRef],
    known: Sequence[KnownRecord],
) -> tuple[list[RecordRef], list[RecordRef]]:
    """(still missing, ambiguous): a record not matched under its account may be in the list
    with its account echoed otherwise (normalised, dropped: unconfirmed). Where its phone1 is
    shown more often than the other batches' landed records and this batch's matches account
    for, it is ambiguous, never missing: absence is decided on phone1 alone."""
    by_phone: dict[str, list[RecordRef]] = {}
    for rec in missing:
        by_phone.setdefault(canonical_phone(rec.phone1), []).append(rec)
    taken = Counter(canonical_phone(r.phone1) for r in matched)
    still: list[RecordRef] = []
    unsure: list[RecordRef] = []
    for phone, group in by_phone.items():
        landed = sum(1 for k in known if k.landed and canonical_phone(k.phone1) == phone)
        spare = counts.by_phone[phone] - landed - taken[phone] if phone else 0
        cut = min(max(spare, 0), len(group))
        unsure += group[:cut]
        still += group[cut:]
    return still, unsure


def _ordered(records: list[RecordRef]) -> list[RecordRef]:
    return sorted(records, key=lambda r: r.position)


def calibration_shown(
    counts: ListCounts, records: Sequence[RecordRef], known: Sequence[KnownRecord]
) -> bool:
    """Whether the list shows every record of the calibration batch: per key, at least as many
    transactions as records the campaign is known to hold for sure (appended batches, the
    calibration batch included)."""
    if not records:
        return False
    for key in {key_of(r.phone1, r.account) for r in records}:
        landed, _ = _others(known, key)
        if not key[1] or counts.shown(key) < landed:
            return False
    return True


def gather(
    client: TransactionSource,
    campaign_id: int,
    records: list[RecordRef],
    known: Sequence[KnownRecord] = (),
    calibration: tuple[Calibration, Sequence[RecordRef]] | None = None,
) -> Evidence:
    """Read the list once and weigh this batch's records (and the calibration batch's) in it.
    ``known`` are the records of the campaign's other batches with the same phones (the
    calibration batch's included, as landed)."""
    counts = read_list(client, campaign_id)
    present, missing, ambiguous = match(counts, records, known)
    calibrated = calibration is not None and calibration_shown(counts, calibration[1], known)
    return Evidence(
        present,
        missing,
        counts.read,
        ambiguous,
        counts.unreadable,
        calibration[0] if calibration else None,
        calibrated,
    )


@dataclass(frozen=True)
class Verdict:
    status: BatchStatus | None  # None: stay in_doubt and look again after ``again_s``
    reason: str
    error_kind: str | None = None
    again_s: float | None = None


def verdict(batch: BatchView, evidence: Evidence, *, wait_s: float = 0.0) -> Verdict:
    """What a reconciled batch becomes. ``wait_s``: how young a calibration batch that the list
    does not show yet may be before the list is taken to lag (look again instead of holding)."""
    found, total = len(evidence.present), len(evidence.present) + len(evidence.missing)
    total += len(evidence.ambiguous)
    where = f"campaign {batch.campaign_id}'s transaction list ({evidence.transactions_read} read)"
    if total and found == total:
        return Verdict(BatchStatus.APPENDED, f"reconciled: all {total} records found in {where}")
    hold = "in_doubt"  # what the batch stays: its records may be at LiveVox
    retry = "an operator must decide (`appendq retry` re-sends the whole batch)"
    if evidence.ambiguous:
        return Verdict(
            BatchStatus.OPERATOR_HOLD,
            f"reconciled: {found} of {total} records found in {where}, "
            f"{len(evidence.ambiguous)} more may be there: their phone1 is shown but may be "
            "another in-doubt batch's record, or theirs with the account echoed otherwise; "
            f"{retry}",
            hold,
        )
    if evidence.unreadable:
        return Verdict(
            BatchStatus.OPERATOR_HOLD,
            f"reconciled: {found} of {total} records found in {where}, but "
            f"{evidence.unreadable} entries carry no readable phone: the list cannot prove a "
            f"record absent; {retry}",
            hold,
        )
    if found:
        return Verdict(
            BatchStatus.OPERATOR_HOLD,
            f"reconciled: {found} of {total} records found in {where}; {retry}",
            hold,
        )
    return _none_found(evidence, total, where, retry, wait_s)


def _none_found(evidence: Evidence, total: int, where: str, retry: str, wait_s: float) -> Verdict:
    cal = evidence.calibration
    none = f"reconciled: none of the {total} records found in {where}"
    if cal is None:
        return Verdict(
            BatchStatus.OPERATOR_HOLD,
            f"{none}, but no batch of this campaign answered 204 yet, so the list was never seen "
            f"to show appended records (not proof that nothing landed); {retry}",
            "in_doubt",
        )
    order = "sent after this one" if cal.after else "the campaign's latest 204"
    lag, age = evidence.lag_bound_s, evidence.answer_age_s
    if evidence.calibrated and lag is not None and age is not None and age < lag:
        return Verdict(
            None,
            f"{none}; it shows batch {cal.batch_id}, but that took up to {lag:.0f} s to show and "
            f"this batch's answer came {age:.0f} s ago: looking again once as long has passed",
            again_s=max(lag - age, 0.5),
        )
    if evidence.calibrated:
        return Verdict(
            BatchStatus.READY,
            f"{none}, while it shows every record of batch {cal.batch_id} ({order}, answered 204 "
            f"{cal.age_s:.0f} s ago): nothing landed; sending again",
        )
    if cal.age_s < wait_s:
        return Verdict(
            None,
            f"{none}, and it does not show batch {cal.batch_id} (answered 204 {cal.age_s:.0f} s "
            "ago) yet either: the list may lag; looking again",
            again_s=max(wait_s - cal.age_s, 1.0),
        )
    return Verdict(
        BatchStatus.OPERATOR_HOLD,
        f"{none}, but it does not show batch {cal.batch_id} either ({order}, answered 204 "
        f"{cal.age_s:.0f} s ago): the list does not show appended records (phone key, "
        f"validOnly, lag), so absence proves nothing; {retry}",
        "in_doubt",
    )


def evidence_detail(evidence: Evidence) -> dict[str, object]:
    cal = evidence.calibration
    return {
        "present": len(evidence.present),
        "missing": len(evidence.missing),
        "ambiguous": len(evidence.ambiguous),
        "missing_ids": [str(r.id) for r in evidence.missing[:100]],
        "ambiguous_ids": [str(r.id) for r in evidence.ambiguous[:100]],
        "transactions_read": evidence.transactions_read,
        "unreadable_entries": evidence.unreadable,
        "calibration_batch": cal.batch_id if cal else None,
        "calibration_after": cal.after if cal else None,
        "calibration_shown": evidence.calibrated if cal else None,
    }
