"""Lost answers, poison records and configuration errors, drained in-process against real Redis,
PostgreSQL and the simulator over HTTP."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from appendq import audit, halt, store
from appendq.db.models import BatchStatus, Event
from appendq.drain import drain_once
from appendq.livevox import Transaction
from appendq.reconcile import canonical_phone, gather
from appendq.records import QueuedRecord, new_record_id
from appendq.runtime import Runtime
from appendq.settings import Settings
from appendq.store import RecordRef
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
        }
    )
    runtime = Runtime.build(fast)
    yield runtime
    runtime.close()


def accounts_at_livevox(sim: Sim) -> list[str]:
    return [r["account"] for r in sim.records(CAMPAIGN)]


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
    # Given LiveVox answers 500 without applying, When the batch is in_doubt and reconciled, Then
    # none of its records are found, it goes back to ready and is sent once more: no duplicate.
    sim.fault("append", {"status": 500})
    rt.queue.push("service:1001", leads(3))
    assert drain_once(rt.drainer()).outcome == "in_doubt"
    outcomes = settle_in_doubt(rt, 2)
    assert "appended" in outcomes
    assert accounts_at_livevox(sim) == ["R0", "R1", "R2"]
    with rt.sessions() as session:
        reasons = [e.reason or "" for e in session.scalars(select(Event).order_by(Event.id))]
    assert any("none of the 3 records found" in r for r in reasons)


def test_partly_landed_batch_is_held_for_an_operator(sim: Sim, rt: Runtime) -> None:
    # Given an in_doubt batch of which LiveVox holds only some records, When it is reconciled,
    # Then it is held for an operator with the evidence, and newer records still flow.
    rt.queue.push("service:1001", leads(1))
    assert drain_once(rt.drainer()).outcome == "appended"  # R0 lands
    sim.fault("append", {"drop": True})
    rt.queue.push("service:1001", leads(1))  # R0 again (same account), plus R1
    rt.queue.push("service:1001", leads(1, start=1))
    claim_report = drain_once(rt.drainer())
    assert claim_report.outcome == "in_doubt"
    rt.queue.push("service:1001", leads(1, start=5))
    outcomes = settle_in_doubt(rt, 2)
    held = [b for b in batches(rt) if b.status == BatchStatus.HELD]
    assert len(held) == 1 and held[0].error_kind == store.OPERATOR_HOLD
    assert "1 of 2 records found" in (held[0].error_message or "")
    assert "appended" in outcomes and "R5" in accounts_at_livevox(sim)


def test_poison_record_named_by_livevox_is_set_apart(sim: Sim, rt: Runtime) -> None:
    # Given a batch with one record LiveVox refuses (named in its error), When it is sent, Then
    # that record is rejected with LiveVox's reason and the other records are appended.
    poison = leads(5)
    sim.reset(poison_phones=[poison[2].payload["phone1"]])
    rt.queue.push("service:1001", poison)
    outcomes = [drain_once(rt.drainer()).outcome for _ in range(2)]
    assert outcomes == ["ready", "appended"]
    assert accounts_at_livevox(sim) == ["R0", "R1", "R3", "R4"]
    with rt.sessions() as session:
        bad = audit.find_records(session, account="R2")[0]
        good = audit.find_records(session, account="R3")[0]
    assert bad.status == "rejected" and "record 2" in (bad.reason or "")
    assert good.status == "appended"


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
