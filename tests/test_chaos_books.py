"""The chaos run's books (``bench.chaos_books``): counted per record id, FIFO per target, the
operator's warned re-sends the only allowed duplicates. Pure counting over what a trial saw."""

from __future__ import annotations

from typing import Any

from bench.chaos_books import Books, Lead, Row, Seen, count

ALICE = Lead("r-alice", "campaign:5001", "P1", "2123000001")
BOB = Lead("r-bob", "service:1001", "S1", "2123000001")  # same phone1, other target
CAROL = Lead("r-carol", "service:1001", "S2", "2123000002")


def landed(*leads: Lead) -> list[dict[str, Any]]:
    return [{"phone1": lead.phone, "firstName": lead.tag} for lead in leads]


def books_of(
    accepted: list[Lead],
    rows: dict[str, Row],
    at_sim: list[dict[str, Any]],
    *,
    calls: list[dict[str, Any]] | None = None,
    resent: dict[str, list[str]] | None = None,
) -> Books:
    books = Books()
    seen = Seen(accepted, rows, set(), at_sim, calls or [], resent or {})
    count(books, seen, window_s=1.0, max_calls=5, rate_status=429)
    return books


def test_one_phone_through_two_targets_is_two_records_not_sent_twice() -> None:
    # Given Alice (pinned target) and Bob (service target) with one phone1, each landed once,
    # When the books are counted, Then nothing is sent twice and the shared phone is counted.
    rows = {ALICE.rid: Row("appended"), BOB.rid: Row("appended")}
    books = books_of([ALICE, BOB], rows, landed(ALICE, BOB))
    assert books.anomalies == []
    assert books.figures["sent twice"] == 0
    assert books.figures["phones at LiveVox once per target (two records)"] == 1


def test_a_record_appended_in_the_audit_whose_phone_landed_for_another_is_lost() -> None:
    # Given Alice landed and Bob (same phone1) appended in the audit but never at LiveVox
    # (race 4), When counted, Then Bob is lost although LiveVox holds his phone1.
    rows = {ALICE.rid: Row("appended"), BOB.rid: Row("appended")}
    books = books_of([ALICE, BOB], rows, landed(ALICE))
    assert books.figures["lost"] == 1
    assert books.figures["  lost: appended in the audit, never at LiveVox"] == 1
    assert books.anomalies == [
        "lost: appended in the audit, never at LiveVox: record r-bob (service:1001, appended)"
    ]


def test_one_record_landing_twice_is_sent_twice_unless_an_operator_was_warned() -> None:
    # Given Carol landed twice, When nobody re-sent her batch, Then it is an anomaly; When an
    # operator re-sent it from in_doubt or from a warned hold, Then it is counted apart only;
    # a third copy after one re-send is still sent twice.
    rows = {CAROL.rid: Row("appended")}
    twice = landed(CAROL, CAROL)
    assert books_of([CAROL], rows, twice).figures["sent twice"] == 1
    for status, figure in (
        ("in_doubt", "sent twice via re-sent in_doubt"),
        ("held", "sent twice via re-sent held (warned at the preview)"),
    ):
        books = books_of([CAROL], rows, twice, resent={CAROL.rid: [status]})
        assert (books.anomalies, books.figures[figure]) == ([], 1)
    thrice = books_of([CAROL], rows, landed(CAROL, CAROL, CAROL), resent={CAROL.rid: ["in_doubt"]})
    assert thrice.figures["sent twice"] == 1  # one re-send explains one copy, not two


def test_at_livevox_while_held_is_an_anomaly_unless_held_for_an_operator() -> None:
    # Given Carol at LiveVox, When her batch is held for an operator (may have landed), Then no
    # anomaly; When it is held for another reason, Then the audit contradicts LiveVox.
    held_for_operator = books_of([CAROL], {CAROL.rid: Row("held", True)}, landed(CAROL))
    assert held_for_operator.anomalies == []
    held = books_of([CAROL], {CAROL.rid: Row("held")}, landed(CAROL))
    assert held.figures["at LiveVox but audit says not appended"] == 1


def test_fifo_is_per_target() -> None:
    # Given S1, S2 accepted by the service target and P1 by the pinned one, When P1 lands
    # between them, Then FIFO holds; When S2 lands before S1, Then one record is out of order.
    rows = {lead.rid: Row("appended") for lead in (ALICE, BOB, CAROL)}
    in_order = books_of([BOB, CAROL, ALICE], rows, landed(BOB, ALICE, CAROL))
    assert in_order.figures["out of FIFO order (records)"] == 0
    swapped = books_of([BOB, CAROL, ALICE], rows, landed(CAROL, ALICE, BOB))
    assert swapped.figures["out of FIFO order (records)"] == 1


def test_rate_limit_answers_count_unless_injected() -> None:
    # Given two Append calls answered 429, one of them an injected fault, When counted, Then
    # only the other is LiveVox's own rate-limit answer; six calls in one window are a violation.
    calls: list[dict[str, Any]] = [
        {"kind": "append", "at": 0.0, "status": 429, "fault": None},
        {"kind": "append", "at": 0.1, "status": 429, "fault": {"status": 429}},
        *({"kind": "append", "at": 0.2 + i / 10, "status": 204, "fault": None} for i in range(4)),
    ]
    books = books_of([], {}, [], calls=calls)
    assert books.figures["LiveVox rate-limit answers not injected"] == 1
    assert books.figures["rate-window violations"] == 1
