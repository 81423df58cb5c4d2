"""Issue 8, race 3: an operator's retry acts only on batches still exactly as the preview showed
them (status and version). Real PostgreSQL; the tick between preview and confirmation is driven
with the store's own transitions, as a drain makes them."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from appendq.cli import main
from appendq.db.models import BatchStatus, Event
from appendq.ops import retry
from appendq.ops.retry import RetryFilter
from appendq.runtime import Runtime
from appendq.settings import Settings
from tests.conftest import settings_env
from tests.support.batches import move
from tests.test_audit import batch_status, leads, make_batch

pytestmark = pytest.mark.usefixtures("keep_root_logging")

#: A tick that found the campaign back: held -> ready -> sending, and the answer was lost.
SENT_AND_LOST = [BatchStatus.READY, BatchStatus.SENDING, BatchStatus.IN_DOUBT]


def tick(rt: Runtime, batch_id: int, steps: list[BatchStatus]) -> None:
    """Move the batch as a drain would, one committed transition per step."""
    for step in steps:
        with rt.sessions() as session, session.begin():
            moved = move(session, batch_id, step, actor="worker@tick", reason=f"tick: {step}")
            assert moved is not None


def operator_events(rt: Runtime, batch_id: int) -> list[Event]:
    with rt.sessions() as session:
        query = select(Event).where(Event.batch_id == batch_id, Event.actor.like("operator:%"))
        return list(session.scalars(query))


def test_a_held_batch_sent_and_lost_after_the_preview_is_left_alone(rt: Runtime) -> None:
    # Given a preview showing batch X held (no duplicate warning), When a tick sends X and loses
    # the answer (held -> ready -> sending -> in_doubt) before the operator confirms, Then the
    # retry moves nothing, X stays in_doubt, and the result says why: preview again.
    x = make_batch(rt, BatchStatus.HELD, leads(3))
    where = RetryFilter(batch_id=x)
    with rt.sessions() as session:
        (shown,) = retry.preview_retry(session, where)
    assert (shown.status, shown.may_duplicate) == ("held", False)
    tick(rt, x, SENT_AND_LOST)
    with rt.sessions() as session, session.begin():
        result = retry.retry(
            session, where, reason="campaign is back", actor="operator:ann", only={x: shown.seen()}
        )
    assert result.moved == []
    (left,) = result.left
    assert (left.id, left.previewed, left.now) == (x, "held", "in_doubt")
    assert left.why == "was held at the preview, is in_doubt now: preview again"
    assert batch_status(rt, x) == BatchStatus.IN_DOUBT
    assert operator_events(rt, x) == []


def test_a_batch_that_left_its_status_and_came_back_is_left_alone(rt: Runtime) -> None:
    # Given a preview showing X held at version v, When a tick moves it held -> ready -> held
    # (same status, version v+2), Then the retry leaves it alone naming both versions.
    x = make_batch(rt, BatchStatus.HELD, leads(2))
    with rt.sessions() as session:
        (shown,) = retry.preview_retry(session, RetryFilter(batch_id=x))
    tick(rt, x, [BatchStatus.READY, BatchStatus.HELD])
    with rt.sessions() as session, session.begin():
        result = retry.retry(
            session,
            RetryFilter(batch_id=x),
            reason="r",
            actor="operator:ann",
            only={x: shown.seen()},
        )
    assert result.moved == []
    assert [b.why for b in result.left] == [
        f"was held at the preview and has moved since (version {shown.version} -> "
        f"{shown.version + 2}): preview again"
    ]
    assert batch_status(rt, x) == BatchStatus.HELD


def test_unchanged_batches_move_beside_changed_ones(rt: Runtime) -> None:
    # Given a preview of two failed batches, When one is moved by a tick to sending (no longer
    # retryable) and the other is untouched, Then only the untouched one moves back to ready,
    # its event records the version it was previewed at, and the other is reported.
    a = make_batch(rt, BatchStatus.FAILED, leads(1, 0))
    b = make_batch(rt, BatchStatus.FAILED, leads(1, 10))
    where = RetryFilter(statuses=(BatchStatus.FAILED,))
    with rt.sessions() as session:
        preview = retry.preview_retry(session, where)
    seen = {s.id: s.seen() for s in preview}
    tick(rt, b, [BatchStatus.READY, BatchStatus.SENDING])
    with rt.sessions() as session, session.begin():
        result = retry.retry(session, where, reason="fixed", actor="operator:ann", only=seen)
    assert [m.id for m in result.moved] == [a]
    assert [(c.id, c.now) for c in result.left] == [(b, "sending")]
    assert result.left[0].why == "was failed at the preview, is sending now: preview again"
    (event,) = operator_events(rt, a)
    assert event.detail is not None and event.detail["version"] == seen[a].version
    assert batch_status(rt, b) == BatchStatus.SENDING


def test_a_previewed_batch_that_no_longer_exists_is_reported(rt: Runtime) -> None:
    # Given a preview holding an id that is not (or no longer) in the database, When retried,
    # Then it is reported as gone and nothing else happens.
    x = make_batch(rt, BatchStatus.FAILED, leads(1))
    with rt.sessions() as session:
        (shown,) = retry.preview_retry(session, RetryFilter(batch_id=x))
    gone = {x + 1000: shown.seen()}
    with rt.sessions() as session, session.begin():
        result = retry.retry(
            session, RetryFilter(statuses=(BatchStatus.FAILED,)), reason="r", only=gone
        )
    assert result.moved == []
    assert [(c.id, c.now, c.why) for c in result.left] == [
        (x + 1000, None, "no longer exists: preview again")
    ]
    assert batch_status(rt, x) == BatchStatus.FAILED


def test_cli_retry_confirmed_after_a_tick_sent_the_batch_changes_nothing(
    rt: Runtime, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given `appendq retry --batch X` previewing X held, When a tick sends X and loses the answer
    # while the operator reads the preview, and the operator then confirms, Then X stays
    # in_doubt, the command names X as changed since the preview ("preview again") and exits 1.
    from appendq.cli import ops

    x = make_batch(rt, BatchStatus.HELD, leads(2))

    def confirm_after_a_tick(question: str, yes: bool) -> None:
        tick(rt, x, SENT_AND_LOST)

    monkeypatch.setattr(ops, "_confirm", confirm_after_a_tick)
    env = settings_env(settings, APPENDQ_LOG_LEVEL="WARNING")
    result = CliRunner(env=env).invoke(
        main, ["retry", "--batch", str(x), "--reason", "campaign is back"]
    )
    assert result.exit_code == 1, result.output
    assert "moved 0 batches (0 records) back to ready" in result.stdout
    assert (
        f"left alone: batch {x} was held at the preview, is in_doubt now: preview again"
        in result.stderr
    )
    assert batch_status(rt, x) == BatchStatus.IN_DOUBT
    assert operator_events(rt, x) == []
