"""Lost answers, poison records and configuration errors, drained in-process against real Redis,
PostgreSQL and the simulator over HTTP."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from appendq.audit import timeline
from appendq.batches.store import RecordRef
from appendq.db.models import BatchStatus, Event
from appendq.drain import halt
from appendq.drain.reconcile import canonical_phone, gather
from appendq.drain.tick import drain_once
from appendq.livevox.client import LiveVoxClient, Transaction
from appendq.queue.item import QueuedRecord, new_record_id
from appendq.runtime import Runtime
from appendq.settings import Settings
from tests.conftest import Sim, batches

CAMPAIGN = 5001


def leads(n: int, start: int = 0) -> list[QueuedRecord]:
    return [
        QueuedRecord(
            new_record_id(),
            1.7e9 + start + i,
            {"phone1": f"212{3000000 + start + i:07d}", "account": f"R{start + i}"},
        )
        for i in range(n)
    ]


@pytest.fixture
def rt(settings: Settings) -> Iterator[Runtime]:
    fast = settings.model_copy(
        update={
            "livevox_read_timeout_s": 0.5,
            "livevox_connect_timeout_s": 0.5,
            "call_grace_s": 0.0,
            "answered_settle_s": 0.5,
        }
    )
    runtime = Runtime.build(fast)
    yield runtime
    runtime.close()


def accounts_at_livevox(sim: Sim) -> list[str]:
    return [r["account"] for r in sim.records(CAMPAIGN)]


def calls_made(rt: Runtime, n: int, timeout: float = 15.0) -> list[str]:
    """Tick until ``n`` ticks made an Append call (waiting out the rate window); their outcomes."""
    outcomes: list[str] = []
    deadline = time.monotonic() + timeout
    while len(outcomes) < n and time.monotonic() < deadline:
        report = drain_once(rt.drainer())
        if report.called:
            outcomes.append(report.outcome)
        else:
            time.sleep(0.1)
    return outcomes


def settle_in_doubt(rt: Runtime, ticks: int = 5) -> list[str]:
    outcomes = []
    for _ in range(ticks):
        time.sleep(1.05)  # past the call deadline (0.5 + 0.5 + 0)
        outcomes.append(drain_once(rt.drainer()).outcome)
    return outcomes


def test_answer_lost_after_landing_is_reconciled_to_appended(sim: Sim, rt: Runtime) -> None:
    # Given LiveVox applies the batch then stalls past the read timeout, When the answer is lost,
    # Then the batch is in_doubt, and reconciliation finds every record: appended, never re-sent.
    sim.fault("append", {"stall_s": 1.5, "apply": True})
    rt.queue.push("service:1001", leads(4))
    assert drain_once(rt.drainer()).outcome == "in_doubt"
    settle_in_doubt(rt, 2)
    (batch,) = batches(rt)
    assert batch.status == BatchStatus.APPENDED
    with rt.sessions() as session:
        reasons = [e.reason or "" for e in session.scalars(select(Event).order_by(Event.id))]
    assert any("reconciled: all 4 records found" in r for r in reasons)
    assert accounts_at_livevox(sim) == [f"R{i}" for i in range(4)]
    assert len(sim.calls("append")) == 1


def test_answer_lost_before_landing_is_sent_again_once(sim: Sim, rt: Runtime) -> None:
    # Given a batch appended (204: the calibration) and then LiveVox answering 500 without
    # applying, When the in_doubt batch is reconciled, Then none of its records are found while
    # the calibration batch's are: it goes back to ready and is sent once more, no duplicate.
    rt.queue.push("service:1001", leads(2, start=10))
    assert drain_once(rt.drainer()).outcome == "appended"
    sim.fault("append", {"status": 500})
    rt.queue.push("service:1001", leads(3))
    assert drain_once(rt.drainer()).outcome == "in_doubt"
    outcomes = settle_in_doubt(rt, 2)
    assert "appended" in outcomes
    assert accounts_at_livevox(sim) == ["R10", "R11", "R0", "R1", "R2"]
    with rt.sessions() as session:
        reasons = [e.reason or "" for e in session.scalars(select(Event).order_by(Event.id))]
    assert any("none of the 3 records found" in r and "batch 1" in r for r in reasons), reasons


def test_none_found_without_a_calibration_batch_is_held(sim: Sim, rt: Runtime) -> None:
    # Given the campaign's first Append answered 500 without applying (no batch answered 204
    # yet), When reconciled, Then it is held for an operator, never re-sent, and the audit says
    # the list was never seen to show appended records.
    sim.fault("append", {"status": 500})
    rt.queue.push("service:1001", leads(3))
    assert drain_once(rt.drainer()).outcome == "in_doubt"
    settle_in_doubt(rt, 2)
    (batch,) = batches(rt)
    assert batch.status == BatchStatus.OPERATOR_HOLD and batch.error_kind == "in_doubt"
    assert "no batch of this campaign answered 204" in (batch.error_message or "")
    assert len(sim.calls("append")) == 1 and accounts_at_livevox(sim) == []


def test_partly_landed_batch_is_held_for_an_operator(sim: Sim, rt: Runtime) -> None:
    # Given an in_doubt batch (R0, R1) of which LiveVox holds only R0 (appended by someone else
    # while the answer was lost), When it is reconciled, Then it is held for an operator with the
    # evidence, and newer records still flow.
    rt.queue.push("service:1001", leads(1, start=7))
    assert drain_once(rt.drainer()).outcome == "appended"  # the calibration batch
    sim.fault("append", {"drop": True})
    rt.queue.push("service:1001", leads(2))
    assert drain_once(rt.drainer()).outcome == "in_doubt"
    with LiveVoxClient(rt.settings, logout_on_close=False) as other:
        other.append(CAMPAIGN, [leads(1)[0].payload])  # R0 lands outside appendq
    rt.queue.push("service:1001", leads(1, start=5))
    outcomes = settle_in_doubt(rt, 2)
    held = [b for b in batches(rt) if b.status == BatchStatus.OPERATOR_HOLD]
    assert len(held) == 1 and held[0].error_kind == "in_doubt"
    assert "1 of 2 records found" in (held[0].error_message or "")
    assert "appended" in outcomes and "R5" in accounts_at_livevox(sim)


def test_poison_record_named_by_livevox_is_set_apart_after_proof(sim: Sim, rt: Runtime) -> None:
    # Given a batch with one record LiveVox refuses ("record 2", numbering unproven), When it is
    # drained, Then the batch is cut at both records "record 2" may mean (0- or 1-based), FIFO
    # kept: R2 refused alone after the rest was accepted is rejected, the others appended, in 5
    # calls, and 0-based numbering is now proven; When a later batch has a poison record, Then
    # the named record is rejected at once: 2 calls.
    poison = leads(5)
    later = leads(4, start=10)
    sim.reset(
        rate_window_s=rt.settings.rate_window_s,
        poison_phones=[poison[2].payload["phone1"], later[1].payload["phone1"]],
    )
    rt.queue.push("service:1001", poison)
    outcomes = [drain_once(rt.drainer()).outcome for _ in range(5)]
    assert outcomes == ["ready", "appended", "appended", "rejected", "appended"]
    assert accounts_at_livevox(sim) == ["R0", "R1", "R3", "R4"]
    with rt.sessions() as session:
        bad = timeline.find_records(session, account="R2")[0]
        good = timeline.find_records(session, account="R1")[0]
    assert bad.status == "rejected" and "record 0" in (bad.reason or "")
    assert good.status == "appended"
    assert [c["records"] for c in sim.calls("append")] == [5, 1, 1, 1, 2]
    proven = rt.redis.hvals(rt.keys.numbering(rt.settings.livevox_client_name))
    assert proven == [b"zero"]
    rt.queue.push("service:1001", later)
    assert calls_made(rt, 2) == ["ready", "appended"]
    assert accounts_at_livevox(sim)[4:] == ["R10", "R12", "R13"]


def test_unnamed_content_refusal_bisects_to_the_bad_record(sim: Sim, rt: Runtime) -> None:
    # Given LiveVox refuses a batch of 4 once without naming a record, When it is sent, Then the
    # batch is split in two halves sent one after the other, all 4 appended in order.
    sim.fault("append", {"status": 400})
    rt.queue.push("service:1001", leads(4))
    outcomes = [drain_once(rt.drainer()).outcome for _ in range(3)]
    assert outcomes == ["ready", "appended", "appended"]
    assert accounts_at_livevox(sim) == ["R0", "R1", "R2", "R3"]
    assert [b.size for b in batches(rt)] == [2, 2]


def test_forbidden_halts_every_append_until_resumed(sim: Sim, rt: Runtime) -> None:
    # Given LiveVox answers 403 (role may not append), When a tick sends, Then the batch is held
    # with a configuration reason, later ticks make no call; resume lets the batch go out.
    sim.fault("append", {"status": 403})
    rt.queue.push("service:1001", leads(2))
    assert drain_once(rt.drainer()).outcome == "held"
    assert drain_once(rt.drainer()).outcome == "halted"
    assert len(sim.calls("append")) == 1
    stopped = halt.current(rt.redis, rt.keys)
    assert stopped is not None and "403" in stopped.reason
    assert halt.resume(rt.redis, rt.keys)
    assert drain_once(rt.drainer()).outcome == "appended"
    assert accounts_at_livevox(sim) == ["R0", "R1"]


class FakeTransactions:
    """The one call ``gather`` makes of a client: a campaign's transaction list."""

    def __init__(self, transactions: list[Transaction]) -> None:
        self.listed = transactions

    def transactions(self, campaign_id: int) -> Iterator[Transaction]:
        assert campaign_id == CAMPAIGN
        yield from self.listed


def ref(position: int, phone1: str, account: str | None) -> RecordRef:
    return RecordRef(uuid.uuid4(), position, phone1, account)


@pytest.mark.parametrize(
    ("phone", "canonical"),
    [
        ("2125551234", "2125551234"),
        ("12125551234", "2125551234"),
        ("+1 (212) 555-1234", "2125551234"),
        ("+447911123456", "447911123456"),
        ("447911123456", "447911123456"),
        ("22125551234", "22125551234"),  # 11 digits not starting with 1: kept as is
    ],
)
def test_canonical_phone(phone: str, canonical: str) -> None:
    assert canonical_phone(phone) == canonical


def test_gather_matches_phone1_in_another_form_but_never_phone2() -> None:
    # Given LiveVox holds phone1 with a leading 1, "+44" numbers without the plus, and a lead whose
    # phone2 is another record's phone1 / When gathering / Then the first two records are present
    # (by account, and by phone alone), the third missing: only a transaction's phone1 matches.
    client = FakeTransactions(
        [
            Transaction("1", "R0", ("12123000000", "2123009999")),
            Transaction("2", None, ("447911123456",)),
            Transaction("3", "R9", ("2129999999", "2123000002")),
            Transaction("4", "R5", ()),
        ]
    )
    records = [
        ref(0, "2123000000", "R0"),
        ref(1, "+447911123456", None),
        ref(2, "2123000002", None),
        ref(3, "2123009999", "R0"),  # R0's phone2, not its phone1
    ]
    evidence = gather(client, CAMPAIGN, records)
    assert [r.position for r in evidence.present] == [0, 1]
    assert [r.position for r in evidence.missing] == [2, 3]
    assert evidence.transactions_read == 4


def test_gather_with_an_account_needs_that_account() -> None:
    # Given phone1 held under another account / When gathering a record with an account / Then
    # it is missing: the same number under someone else's account is not this record.
    client = FakeTransactions([Transaction("1", "OTHER", ("+1 212 300 0000",))])
    evidence = gather(client, CAMPAIGN, [ref(0, "2123000000", "R0"), ref(1, "2123000000", None)])
    assert [r.position for r in evidence.present] == [1]
    assert [r.position for r in evidence.missing] == [0]


def test_records_refused_alone_are_not_rejected_by_another_familys_204(
    sim: Sim, rt: Runtime
) -> None:
    # Given two one-record batches each refused with a 400 whose words name no record and no
    # campaign state (held as suspects: nothing proves the refusal was about them), When a third
    # batch of the campaign is then accepted, Then the two stay held for an operator: another
    # batch's 204 proves nothing about them (the campaign may have refused everything a while).
    for n in range(2):
        rt.queue.push("service:1001", leads(1, start=100 + n))
        sim.fault("append", {"status": 400})
        assert drain_once(rt.drainer()).outcome == "operator_hold"
    rt.queue.push("service:1001", leads(1, start=200))
    assert drain_once(rt.drainer()).outcome == "appended"
    statuses = [b.status for b in batches(rt)]
    assert statuses == [BatchStatus.OPERATOR_HOLD, BatchStatus.OPERATOR_HOLD, BatchStatus.APPENDED]


def test_a_proven_numbering_is_trusted_only_for_the_message_that_proved_it(rt: Runtime) -> None:
    # Given the numbering "one" proven by a refusal worded "record N: invalid phone", When a
    # refusal worded otherwise names a number, Then its numbering is not taken as proven (a
    # message about "entries N" may count something else): its record must be proven again.
    from appendq.drain.isolate import RedisNumbering, refusal_shape

    memory = RedisNumbering(rt.redis, rt.keys.numbering("SIMCLIENT"))
    memory.prove("one", refusal_shape("record 17: invalid phone"))
    assert memory.get(refusal_shape("record 4: invalid phone")) == "one"
    assert memory.get(refusal_shape("3 entries over the limit at index 2")) is None
