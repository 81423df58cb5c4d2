"""Keyset pages of the audit (``appendq.audit.cursor``): every order a question can be read in,
paged two records at a time, gives exactly the records of one big page, in the same order, none
twice; a cursor that is not one, or another question's, is refused naming ``after``; the CLI and
the HTTP API hand the next cursor over. Real PostgreSQL and Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from appendq.audit import query, timeline
from appendq.audit.cursor import Cursor
from appendq.audit.query import AuditFilter
from appendq.batches import reads
from appendq.batches.store import BatchStore
from appendq.db.models import Batch, BatchStatus, RecordStatus
from appendq.errors import InvalidValue
from appendq.runtime import Runtime
from appendq.settings import Settings
from tests.test_audit import CAMPAIGN, T0, leads, make_batch
from tests.test_intake import OPS_AUTH, serving, with_tokens
from tests.test_ops_cli import Env, env, run  # noqa: F401  (env: a fixture)


@pytest.fixture
def batches(rt: Runtime) -> list[int]:
    """Four batches of 3 records of service 1001 (a failed one with a record rejected alone)."""
    made = [
        make_batch(rt, status, leads(3, 10 * i))
        for i, status in enumerate(
            [BatchStatus.APPENDED, BatchStatus.FAILED, BatchStatus.APPENDED, BatchStatus.FAILED]
        )
    ]
    with rt.sessions() as s, s.begin():
        refused = reads.batch_records(s, made[3])[1]
        BatchStore(s, "w").set_record_apart(made[3], refused.id, RecordStatus.REJECTED, "bad")
    return made


def paged(rt: Runtime, size: int, **asked: Any) -> Iterator[tuple[str, list[str]]]:
    """Each page's order and record ids, ``size`` a page, until the last."""
    after = None
    while True:
        with rt.sessions() as s:
            page = timeline.find_page(s, limit=size, after=after, **asked)
        order = Cursor.decode(page.next).order if page.next else "-"
        yield order, [r.record_id for r in page.records]
        if page.next is None:
            return
        after = page.next


QUESTIONS: dict[str, dict[str, Any]] = {
    "time": {"service_id": 1001},
    "position": {"batch_id": 0},  # the second batch, set below
    "batches": {"campaign_id": CAMPAIGN},
    "batches, a status": {"campaign_id": CAMPAIGN, "status": ["failed", "rejected"]},
}


@pytest.mark.parametrize("name", list(QUESTIONS))
def test_pages_two_at_a_time_are_the_one_big_page(
    rt: Runtime, batches: list[int], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 12 records in 4 batches, When a question is read 2 records a page (in its order: a
    # campaign over "many" batches is read batch by batch), Then the pages together are the one
    # page of 1,000, in the same order, none twice, and the last page says so (no cursor).
    monkeypatch.setattr(query, "SCOPE_MAX_BATCHES", 0)  # every campaign has "many" batches
    asked = dict(QUESTIONS[name])
    if "batch_id" in asked:
        asked["batch_id"] = batches[1]
    with rt.sessions() as s:
        whole = [r.record_id for r in timeline.find_records(s, limit=1000, **asked)]
    pages = list(paged(rt, 2, **asked))
    ids = [i for _, page in pages for i in page]
    assert ids == whole and len(set(ids)) == len(ids) and len(whole) >= 3
    assert {order for order, _ in pages[:-1]} == {name.split(",")[0]}
    assert len(pages) == -(-len(whole) // 2) + (len(whole) % 2 == 0)


def test_a_cursor_that_is_not_one_or_is_another_questions_is_refused(
    rt: Runtime, batches: list[int]
) -> None:
    # Given a cursor of a batch's page, When it is given to a question by service, or garbage
    # is given as a cursor, Then each is an InvalidValue naming "after", nothing read.
    with rt.sessions() as s:
        page = timeline.find_page(s, batch_id=batches[0], limit=1)
        assert page.next is not None
        for bad in (page.next, "garbage", "W10", "x" * 500, Cursor("time", ()).encode()):
            with pytest.raises(InvalidValue) as refused:
                timeline.find_page(s, service_id=1001, limit=1, after=bad)
            assert refused.value.field == "after"


def test_the_cli_prints_the_next_cursor_and_reads_the_next_page(
    rt: Runtime,
    env: Env,  # noqa: F811
    batches: list[int],
) -> None:
    # Given 12 records of service 1001, When `audit --service 1001 --limit 5` runs, Then it says
    # how to read on (--after CURSOR); run with it, the next 5 follow; --json carries "next".
    first = run(env, "audit", "--service", "1001", "--limit", "5", "--json")
    doc = json.loads(first.stdout)
    assert len(doc["records"]) == 5 and doc["next"]
    shown = run(env, "audit", "--service", "1001", "--limit", "5")
    assert f"--after {doc['next']}" in shown.stdout
    second = run(
        env, "audit", "--service", "1001", "--limit", "5", "--after", doc["next"], "--json"
    )
    with rt.sessions() as s:
        whole = [r.record_id for r in timeline.find_records(s, service_id=1001, limit=10)]
    assert [r["record_id"] for r in doc["records"] + json.loads(second.stdout)["records"]] == whole
    bad = run(env, "audit", "--service", "1001", "--after", "garbage")
    assert bad.exit_code == 2 and "after" in bad.output


def test_the_http_audit_links_the_next_page(
    rt: Runtime, settings: Settings, batches: list[int]
) -> None:
    # Given 3 records of a batch, When GET /v1/audit?batch=B&limit=2, Then a Link rel="next"
    # header leads to the third record, whose page has no Link; a bad cursor is a 422 naming it.
    with serving(with_tokens(settings)) as api:
        first = api.get("/v1/audit", params={"batch": batches[0], "limit": 2}, headers=OPS_AUTH)
        assert first.status_code == 200 and len(first.json()) == 2
        nxt = httpx.URL(first.headers["link"].split(">")[0].lstrip("<"))
        assert first.headers["link"].endswith('; rel="next"')
        second = api.get(nxt.raw_path.decode(), headers=OPS_AUTH)
        assert [r["position"] for r in second.json()] == [2] and "link" not in second.headers
        bad = api.get("/v1/audit", params={"batch": batches[0], "after": "nope"}, headers=OPS_AUTH)
        assert bad.status_code == 422 and "after" in bad.text


def test_a_campaign_in_a_window_reads_only_when_its_batches_records_were_enqueued(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a campaign's batches with records enqueued 10:00-10:00:04 and 12:00-12:00:01, and
    # another campaign's at 09:00, When the auditor asks for the campaign in 08:00-13:00, Then the
    # window read is cut to 10:00..12:00:01 (plus 1 µs), the records are those of the whole
    # window; a window with none of its batches reads nothing, and a batch without a recorded
    # range leaves the window as asked.
    ten = T0.replace(hour=10)
    make_batch(rt, BatchStatus.APPENDED, leads(5, 0, ten))
    make_batch(rt, BatchStatus.APPENDED, leads(2, 10, ten.replace(hour=12)))
    make_batch(rt, BatchStatus.APPENDED, leads(3, 20, ten.replace(hour=9)), campaign=CAMPAIGN + 1)
    asked = AuditFilter(campaign_id=CAMPAIGN, since=ten.replace(hour=8), until=ten.replace(hour=13))
    with rt.sessions() as s:
        cut = query._narrowed(s, asked)
        assert (cut.since, cut.until) == (
            ten,
            ten.replace(hour=12) + timedelta(seconds=1, microseconds=1),
        )
        empty = query._narrowed(s, replace(asked, until=ten.replace(hour=9, minute=30)))
        assert empty.since == empty.until
        found = timeline.find_records(s, campaign_id=CAMPAIGN, since=asked.since, until=asked.until)
    with rt.sessions() as s, s.begin():
        s.execute(update(Batch).where(Batch.campaign_id == CAMPAIGN).values(enqueued_from=None))
    with rt.sessions() as s:
        assert query._narrowed(s, asked) == asked
        monkeypatch.setattr(query, "_narrowed", lambda _, where: where)
        whole = timeline.find_records(s, campaign_id=CAMPAIGN, since=asked.since, until=asked.until)
        assert len(found) == 7 and found == whole


def test_a_status_in_a_window_reads_only_the_batches_that_overlap_it(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given three rejected batches of a campaign, enqueued at 09:00, 10:00 and 12:00, When the
    # auditor asks for its rejected records in 09:30-11:00, Then only the 10:00 batch is read
    # (the scope), and the answer is the one the walk of the whole window gives.
    for hour in (9, 10, 12):
        make_batch(rt, BatchStatus.REJECTED, leads(3, 10 * hour, T0.replace(hour=hour)))
    asked = dict(campaign_id=CAMPAIGN, status="rejected")
    window = dict(since=T0.replace(hour=9, minute=30), until=T0.replace(hour=11))
    with rt.sessions() as s:
        where = AuditFilter(campaign_id=CAMPAIGN, statuses=query.parse_statuses("rejected"))
        (only,) = query._scope(s, replace(where, **window)) or []
        assert len(query._scope(s, where) or []) == 3
        found = [r.record_id for r in timeline.find_records(s, **asked, **window)]
        monkeypatch.setattr(query, "SCOPE_WINDOWED", 0)
        assert query._scope(s, replace(where, **window)) is None
        walked = timeline.find_records(s, **asked, **window)
        assert found == [r.record_id for r in walked]
        assert len(found) == 3 and {r.batch_id for r in walked} == {only}
