"""Issue 7, defects 4 and 9: audit and retry questions that PostgreSQL cannot answer (ids past
BIGINT, NUL, unpaired surrogates) are refused with a typed error naming the parameter, in the
functions and in the CLI (one line, exit 2, never a traceback); an operator's reason is bounded
and said once per event in an audit answer. Real PostgreSQL and Redis."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from appendq.audit import timeline
from appendq.cli import main
from appendq.db.models import BatchStatus, Event
from appendq.errors import InvalidValue
from appendq.ops import retry
from appendq.ops.retry import REASON_MAX, RetryFilter
from appendq.runtime import Runtime
from appendq.settings import Settings
from appendq.target import ID_MAX
from tests.conftest import settings_env
from tests.test_audit import batch_status, leads, make_batch

pytestmark = pytest.mark.usefixtures("keep_root_logging")

TOO_BIG = ID_MAX + 1


def run(settings: Settings, *args: str) -> Result:
    env = settings_env(settings, APPENDQ_LOG_LEVEL="WARNING")
    return CliRunner(env=env).invoke(main, list(args))


def event_count(rt: Runtime) -> int:
    with rt.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Event)) or 0)


# --- the functions the CLI and HTTP share -----------------------------------------------------


@pytest.mark.parametrize(
    ("question", "field"),
    [
        ({"batch_id": TOO_BIG}, "batch"),
        ({"batch_id": 0}, "batch"),
        ({"campaign_id": TOO_BIG}, "campaign"),
        ({"service_id": -(2**70)}, "service"),
        ({"account": "a\x00b"}, "account"),
        ({"account": "a\udcffb"}, "account"),
        ({"account": "x" * 51}, "account"),
        ({"phone": "212555\x001234"}, "phone"),
        ({"record_id": "a\x00b"}, "record"),
        ({"status": ["nope\x00"]}, "status"),
        ({"account": "A1", "limit": 0}, "limit"),
        ({"account": "A1", "limit": 10**30}, "limit"),
        ({}, "filter"),
    ],
)
def test_audit_questions_postgresql_cannot_answer_are_refused(
    rt: Runtime, question: dict[str, Any], field: str
) -> None:
    # Given any database, When find_records gets an id past BIGINT, NUL, a lone surrogate or an
    # impossible limit, Then InvalidValue names the parameter before any query runs.
    with rt.sessions() as session, pytest.raises(InvalidValue) as caught:
        timeline.find_records(session, **question)
    assert caught.value.field == field
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("where", "field"),
    [
        (RetryFilter(batch_id=TOO_BIG), "batch"),
        (RetryFilter(service_id=TOO_BIG), "service"),
        (RetryFilter(campaign_id=0), "campaign"),
        (RetryFilter(target="service:99999999999999999999"), "service"),
        (RetryFilter(target="queue:1"), "target"),
    ],
)
def test_retry_filters_past_bigint_are_refused_in_preview_and_retry(
    rt: Runtime, where: RetryFilter, field: str
) -> None:
    # Given any database, When a retry preview or retry gets an id PostgreSQL cannot hold, Then
    # InvalidValue names it (HTTP maps it to 422), and nothing is written.
    with rt.sessions() as session:
        with pytest.raises(InvalidValue) as previewed:
            retry.preview_retry(session, where)
        with pytest.raises(InvalidValue) as retried:
            retry.retry(session, where, reason="why", actor="operator:ann")
    assert previewed.value.field == retried.value.field == field
    assert event_count(rt) == 0


@pytest.mark.parametrize(
    ("reason", "actor", "field", "message"),
    [
        ("a\x00b", "operator:ann", "reason", "contains a control character (U+0000)"),
        ("line one\nline two", "operator:ann", "reason", "contains a line break (U+000A)"),
        ("x" * (REASON_MAX + 1), "operator:ann", "reason", "is 501 characters long: at most 500"),
        ("x" * 5_000_000, "operator:ann", "reason", "is 5,000,000 characters long"),
        ("   ", "operator:ann", "reason", "must not be empty"),
        ("ok", "operator:" + "a" * 60, "actor", "is 69 characters long: at most 64"),
        ("ok", "operator:a\x1bb", "actor", "contains a control character (U+001B)"),
    ],
)
def test_operator_text_is_bounded_and_one_line(
    rt: Runtime, reason: str, actor: str, field: str, message: str
) -> None:
    # Given a failed batch, When a retry's reason or actor holds NUL, a line break, more than
    # REASON_MAX (or 64) characters, or nothing, Then InvalidValue names it and the batch stays.
    batch = make_batch(rt, BatchStatus.FAILED, leads(1))
    before = event_count(rt)
    with rt.sessions() as session, pytest.raises(InvalidValue) as caught:
        retry.retry(session, RetryFilter(batch_id=batch), reason=reason, actor=actor)
    assert caught.value.field == field
    assert caught.value.message.startswith(message)
    assert batch_status(rt, batch) == BatchStatus.FAILED
    assert event_count(rt) == before


def test_a_reason_of_exactly_reason_max_is_taken(rt: Runtime) -> None:
    # Given a failed batch, When retried with a reason of REASON_MAX characters, Then it moves
    batch = make_batch(rt, BatchStatus.FAILED, leads(1))
    with rt.sessions() as session, session.begin():
        moved = retry.retry(
            session, RetryFilter(batch_id=batch), reason="r" * REASON_MAX, actor="operator:ann"
        ).moved
    assert [m.id for m in moved] == [batch]


# --- the CLI ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["audit", "--batch", str(TOO_BIG)],
        ["audit", "--campaign", str(TOO_BIG)],
        ["audit", "--service", str(TOO_BIG)],
        ["audit", "--account", "a\x00b"],
        ["audit", "--account", "A1"],  # a lead's account number, not a LiveVox account's name
        ["audit", "--lead-account", "a\x00b"],
        ["audit", "--lead-account", "a\udcffb"],  # an argv byte that is not UTF-8
        ["audit", "--phone", "212\x1b5551234"],
        ["audit", "--record", "a\x00b"],
        ["retry", "--batch", str(TOO_BIG), "--reason", "x", "--yes"],
        ["retry", "--campaign", str(TOO_BIG), "--reason", "x", "--yes"],
        ["retry", "--status", "failed", "--reason", "a\x00b", "--yes"],
        ["retry", "--status", "failed", "--reason", "r" * (REASON_MAX + 1), "--yes"],
        ["retry", "--status", "failed", "--reason", "x", "--actor", "a\nb", "--yes"],
    ],
)
def test_cli_refuses_what_postgresql_cannot_take_with_one_line_and_exit_2(
    rt: Runtime, settings: Settings, args: list[str]
) -> None:
    # Given a failed batch, When audit or retry gets an id past BIGINT, NUL, a control character
    # or a reason past REASON_MAX, Then exit 2, one "Error:" line, no traceback, nothing moved.
    batch = make_batch(rt, BatchStatus.FAILED, leads(1))
    result = run(settings, *args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.output
    assert batch_status(rt, batch) == BatchStatus.FAILED


def test_cli_error_for_nul_in_account_names_the_option_and_the_character(
    rt: Runtime, settings: Settings
) -> None:
    # Given any database, When `audit --lead-account 'a<NUL>b'`, Then the one line says which
    # parameter and which character; When `audit --account A1` (a lead's account number where
    # the LiveVox account goes), Then the line says it is not an account name and points to
    # --lead-account.
    result = run(settings, "audit", "--lead-account", "a\x00b")
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: lead_account: contains a control character (U+0000)"
    )
    lead = run(settings, "audit", "--account", "A1")
    assert lead.stderr.strip().splitlines()[-1] == (
        "Error: account: 'A1' is not an account name (a-z, 0-9, _ and -, 1-32) (--account is "
        "the LiveVox account; a lead's account number is --lead-account)"
    )


# --- defect 9: a reason once per event, not once per record -----------------------------------


def retried_batch(rt: Runtime, reason: str) -> int:
    """A 1,000-record failed batch, then retried by an operator with ``reason``."""
    batch = make_batch(rt, BatchStatus.FAILED, leads(1000))
    with rt.sessions() as session, session.begin():
        retry.retry(session, RetryFilter(batch_id=batch), reason=reason, actor="operator:ann")
    return batch


def test_a_retry_reason_appears_once_in_a_1000_record_audit(
    rt: Runtime, settings: Settings
) -> None:
    # Given two 1,000-record batches retried with a 3- and a 500-character reason, When each is
    # audited (functions, `audit --json`, `audit`), Then the long reason appears once per answer,
    # not once per record, and the answers differ in size by about the reason's length alone.
    reason = "R" * (REASON_MAX - 3) + "END"
    long, short = retried_batch(rt, reason), retried_batch(rt, "RRR")
    with rt.sessions() as session:
        found = timeline.find_records(session, batch_id=long)
    assert len(found) == 1000
    assert all(r.timeline[-1].reason == reason for r in found)  # each record's own timeline
    assert json.dumps(timeline.document(found)).count(reason) == 1
    sizes = {}
    for batch in (long, short):
        as_json = run(settings, "audit", "--batch", str(batch), "--json")
        assert as_json.exit_code == 0, as_json.output
        sizes[batch] = len(as_json.stdout)
    assert sizes[long] - sizes[short] < 2 * REASON_MAX
    assert run(settings, "audit", "--batch", str(long), "--json").stdout.count(reason) == 1
    table = run(settings, "audit", "--batch", str(long))
    assert table.exit_code == 0, table.output
    assert table.stdout.count(reason) == 1
    retried = [line for line in table.stdout.splitlines() if "operator:ann" in line]
    assert [line.endswith("(as above)") for line in retried] == [False] + [True] * 999
