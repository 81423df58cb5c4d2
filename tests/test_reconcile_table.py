"""Reconciliation and isolation, table-driven: how a transaction list is read and counted
(``read_list``), which records of a batch it shows (``match``), whether it shows the calibration
batch (``calibration_shown``, ``gather``), what the batch becomes (``verdict``, every branch), and
which records a refusal may mean (``suspects``). Pure functions over values: the transaction
source is a list of ``Transaction`` values."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

import pytest

from appendq.batches.history import Calibration, KnownRecord
from appendq.batches.store import BatchView, RecordRef
from appendq.db.models import BatchStatus
from appendq.drain.isolate import suspects
from appendq.drain.reconcile import (
    Evidence,
    ListCounts,
    calibration_shown,
    gather,
    match,
    read_list,
    verdict,
)
from appendq.errors import Named
from appendq.livevox.client import Transaction

P, Q = "2125550101", "2125550102"


class Listed:
    """A campaign's transaction list, as ``gather`` reads it."""

    def __init__(self, *entries: tuple[str | None, str | None]) -> None:
        self.entries = [Transaction(None, a, (p,) if p else ()) for a, p in entries]
        self.asked: list[int] = []

    def transactions(self, campaign_id: int, /) -> Iterable[Transaction]:
        self.asked.append(campaign_id)
        return self.entries


def ref(position: int, phone1: str, account: str | None = None) -> RecordRef:
    return RecordRef(uuid.UUID(int=position + 1), position, phone1, account)


def test_read_list_counts_per_account_and_per_phone() -> None:
    # Given entries with account and phone, phone only, the same phone written with +1, and one
    # without a phone / When read / Then counted per (account, phone1) and per phone1, the one
    # without a phone counted unreadable, and shown() answers per kind of key.
    source = Listed(("A", P), (None, P), ("A", "+1 " + P), (None, None), ("B", Q))
    counts = read_list(source, 5001)
    assert source.asked == [5001]
    assert (counts.read, counts.unreadable) == (5, 1)
    assert counts.by_phone == {P: 3, Q: 1}
    assert counts.by_account == {("A", P): 2, ("B", Q): 1}
    assert (counts.shown(("A", P)), counts.shown((None, P)), counts.shown(("Z", P))) == (2, 3, 0)


def counts(*entries: tuple[str | None, str]) -> ListCounts:
    return read_list(Listed(*entries), 1)


#: (listed, batch records, other batches' records) -> (present, missing, ambiguous) positions
MATCHED = [
    ([("A", P)], [ref(0, P, "A")], [], ([0], [], [])),
    ([], [ref(0, P, "A")], [], ([], [0], [])),
    ([("A", P)], [ref(0, P, "A"), ref(1, P, "A")], [], ([0], [1], [])),  # shown once: one of two
    ([("A", P), ("A", P)], [ref(0, P, "A"), ref(1, P, "A")], [], ([0, 1], [], [])),
    ([("A", P)], [ref(0, P, "A")], [KnownRecord(1, P, "A", True)], ([], [0], [])),
    ([("A", P)] * 2, [ref(0, P, "A")], [KnownRecord(1, P, "A", True)], ([0], [], [])),
    ([("A", P)], [ref(0, P, "A")], [KnownRecord(1, P, "A", False)], ([], [], [0])),
    ([("A", P)] * 2, [ref(0, P, "A")], [KnownRecord(1, P, "A", False)], ([0], [], [])),
    ([("A", P)], [ref(0, P, "A")], [KnownRecord(1, P, "B", True)], ([0], [], [])),
    ([(None, P)], [ref(0, P)], [KnownRecord(1, P, "B", True)], ([], [0], [])),
    ([(None, P)], [ref(0, P)], [], ([0], [], [])),
    ([(None, P)], [ref(0, P, "A")], [], ([], [], [0])),  # account echoed otherwise
    ([(None, P)], [ref(0, P, "A")], [KnownRecord(1, P, None, True)], ([], [0], [])),
    ([(None, P)] * 2, [ref(0, P, "A")], [KnownRecord(1, P, "B", True)], ([], [], [0])),
    ([(None, Q)], [ref(0, P, "A"), ref(1, Q)], [], ([1], [0], [])),
    ([("A", P)], [ref(0, "", "A")], [], ([], [0], [])),  # no phone: never matched
    ([("A", P), (None, Q)], [ref(1, Q), ref(0, P, "A")], [], ([0, 1], [], [])),  # by position
]


@pytest.mark.parametrize(("listed", "records", "known", "expect"), MATCHED)
def test_match_counts_each_key_past_what_other_batches_account_for(
    listed: list[tuple[str | None, str]],
    records: list[RecordRef],
    known: list[KnownRecord],
    expect: tuple[list[int], list[int], list[int]],
) -> None:
    # Given the list's transactions and other batches' records with the same keys (landed or
    # maybe) / When this batch's records are matched / Then present only where the list shows
    # more than the others account for; ambiguous where that depends on whether another batch
    # landed or on how the account was echoed; missing otherwise; each list in batch order.
    got = match(counts(*listed), records, known)
    assert tuple([r.position for r in part] for part in got) == expect


def landed(*records: RecordRef) -> list[KnownRecord]:
    """The calibration batch's records as ``known`` holds them: landed."""
    return [KnownRecord(9, r.phone1, r.account, True) for r in records]


CAL_RECORDS = [ref(0, P, "A"), ref(1, Q)]


@pytest.mark.parametrize(
    ("listed", "records", "known", "shown"),
    [
        ([("A", P), (None, Q)], CAL_RECORDS, landed(*CAL_RECORDS), True),
        ([("A", P)], CAL_RECORDS, landed(*CAL_RECORDS), False),
        ([("A", P), ("B", Q)], CAL_RECORDS, landed(*CAL_RECORDS), True),  # Q by phone alone
        ([("A", P)], [ref(0, P, "A")], landed(ref(0, P, "A")) * 2, False),  # one of two
        ([("A", P)] * 2, [ref(0, P, "A")], landed(ref(0, P, "A")) * 2, True),
        ([("A", P)], [ref(0, "", "A")], [], False),  # no phone: never shown
        ([("A", P)], [], [], False),  # no records: nothing seen
    ],
)
def test_the_calibration_batch_is_shown_only_if_every_record_is(
    listed: list[tuple[str | None, str]],
    records: list[RecordRef],
    known: list[KnownRecord],
    shown: bool,
) -> None:
    assert calibration_shown(counts(*listed), records, known) is shown


def test_gather_reads_once_and_weighs_the_batch_and_the_calibration_batch() -> None:
    # Given a list with the calibration batch's record, one of this batch's two and an entry
    # without a phone / When gathered / Then one read; present, missing, the unreadable count
    # and the calibration batch as shown; without one, not calibrated.
    cal = Calibration(4, 12.0, True)
    source = Listed((None, Q), ("A", P), (None, None))
    mine = [ref(0, P, "A"), ref(1, "2125550103", "B")]
    known = [KnownRecord(4, Q, None, True)]
    got = gather(source, 5001, mine, known, (cal, [ref(0, Q)]))
    assert source.asked == [5001]
    assert ([r.position for r in got.present], [r.position for r in got.missing]) == ([0], [1])
    assert (got.transactions_read, got.unreadable, got.ambiguous) == (3, 1, [])
    assert (got.calibration, got.calibrated) == (cal, True)
    bare = gather(Listed(("A", P)), 5001, mine, known)
    assert (bare.calibration, bare.calibrated) == (None, False)
    hidden = gather(Listed(("A", P)), 5001, mine, known, (cal, [ref(0, Q)]))
    assert (hidden.calibration, hidden.calibrated) == (cal, False)


def view() -> BatchView:
    return BatchView(7, "service:1001", BatchStatus.IN_DOUBT, 1, 3, 5001, datetime.now(UTC))


def evidence(
    present: int,
    missing: int,
    ambiguous: int = 0,
    *,
    unreadable: int = 0,
    cal: Calibration | None = None,
    calibrated: bool = False,
    age: float | None = None,
    lag: float | None = None,
) -> Evidence:
    records = [ref(i, f"21255502{i:02d}") for i in range(present + missing + ambiguous)]
    return Evidence(
        records[:present],
        records[present : present + missing],
        42,
        records[present + missing :],
        unreadable,
        cal,
        calibrated,
        age,
        lag,
    )


CAL = Calibration(3, 40.0, False)
HELD, READY = BatchStatus.OPERATOR_HOLD, BatchStatus.READY

#: evidence -> status (None: look again), words of the reason, look again after (s)
VERDICTS = [
    (evidence(3, 0), BatchStatus.APPENDED, "all 3 records found", None),
    (evidence(3, 0, unreadable=2), BatchStatus.APPENDED, "all 3 records found", None),
    (evidence(2, 0, 1), HELD, "2 of 3 records found in campaign 5001's", None),
    (evidence(1, 1, 1, unreadable=4), HELD, "1 more may be there", None),
    (evidence(1, 2, unreadable=4), HELD, "4 entries carry no readable phone", None),
    (evidence(0, 3, unreadable=1), HELD, "0 of 3 records found", None),
    (evidence(1, 2), HELD, "1 of 3 records found", None),
    (evidence(0, 3), HELD, "no batch of this campaign answered 204", None),
    (evidence(0, 0), HELD, "none of the 0 records", None),
    (evidence(0, 3, cal=CAL, calibrated=True), READY, "sending again", None),
    (evidence(0, 3, cal=Calibration(3, 4.0, True), calibrated=True), READY, "sent after", None),
    (evidence(0, 3, cal=CAL, calibrated=True, age=10.0, lag=30.0), None, "up to 30 s", 20.0),
    (evidence(0, 3, cal=CAL, calibrated=True, age=29.8, lag=30.0), None, "looking again", 0.5),
    (evidence(0, 3, cal=CAL, calibrated=True, age=30.0, lag=30.0), READY, "sending again", None),
    (evidence(0, 3, cal=CAL, calibrated=True, age=31.0, lag=30.0), READY, "sending again", None),
    (evidence(0, 3, cal=CAL, calibrated=True, lag=30.0), READY, "sending again", None),
    (evidence(0, 3, cal=Calibration(3, 69.5, False)), None, "may lag", 1.0),
    (evidence(0, 3, cal=Calibration(3, 50.0, False)), None, "may lag", 20.0),
    (evidence(0, 3, cal=Calibration(3, 70.0, False)), HELD, "does not show batch 3", None),
    (evidence(0, 3, cal=CAL, calibrated=False, age=1.0, lag=30.0), None, "may lag", 30.0),
]


@pytest.mark.parametrize(("found", "status", "says", "again"), VERDICTS)
def test_verdict_of_every_kind_of_evidence(
    found: Evidence, status: BatchStatus | None, says: str, again: float | None
) -> None:
    # Given what one read of the list showed (present / missing / ambiguous, unreadable entries,
    # the calibration batch: its age, whether shown, the list's known lag and this batch's
    # answer's age) and a 70 s wait for a young calibration batch / When judged / Then appended
    # (all there), held for an operator (some, ambiguous, unreadable, uncalibrated, too old to
    # lag), sent again (none, calibrated, old enough), or looked at again after ``again`` s.
    got = verdict(view(), found, wait_s=70.0)
    assert got.status == status and says in got.reason, got.reason
    assert got.again_s == (pytest.approx(again) if again is not None else None)
    assert got.status is not None or got.again_s is not None
    assert "(42 read)" in got.reason


def test_without_a_wait_a_young_calibration_batch_not_shown_holds() -> None:
    # Given none found and a calibration batch answered 0.5 s ago that the list does not show /
    # When judged with no wait for the list to catch up / Then held for an operator at once.
    got = verdict(view(), evidence(0, 3, cal=Calibration(3, 0.5, False)))
    assert got.status == HELD and got.again_s is None


@pytest.mark.parametrize(
    ("size", "named", "expect"),
    [
        (5, Named((2,)), {1: ["one"], 2: ["zero"]}),
        (5, Named((0,)), {0: ["zero"]}),
        (5, Named((5,)), {4: ["one"]}),
        (5, Named((6,)), {}),
        (5, Named((-1,)), {}),
        (1, Named((1,)), {0: ["one"]}),
        (5, Named((), ("2125550003",)), {3: ["phone"]}),
        (5, Named((4,), ("2125550003",)), {3: ["one", "phone"], 4: ["zero"]}),
        (5, Named((1, 2)), {0: ["one"], 1: ["zero", "one"], 2: ["zero"]}),
        (0, Named((0,)), {}),
    ],
)
def test_suspects_index_every_record_a_refusal_may_mean(
    size: int, named: Named, expect: dict[int, list[str]]
) -> None:
    # Given a batch of ``size`` records and what a refusal named (a number: from 0 or from 1, is
    # unknown; a phone) / When weighed / Then each index it may mean, with the numberings.
    records = [ref(i, f"212555000{i}") for i in range(size)]
    assert suspects(records, named) == expect
    assert list(suspects(records, named)) == sorted(expect)
