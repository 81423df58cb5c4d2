"""The operators' HTTP endpoints over real HTTP (uvicorn in a thread), against real Redis, a real
PostgreSQL database and the simulator: a lead's lookup, the audit, retry preview and retry, status
and health."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select

from appendq.clock import utcnow
from appendq.db.models import BatchStatus, Event
from appendq.drain.tick import drain_once
from appendq.runtime import Runtime
from appendq.settings import Settings
from tests.conftest import Sim
from tests.support.batches import move
from tests.support.procs import free_port
from tests.test_audit import leads as audit_leads
from tests.test_audit import make_batch
from tests.test_intake import (
    AUTH,
    CAMPAIGN,
    OPS_AUTH,
    OPS_TOKEN,
    TARGET,
    body,
    leads,
    post,
    serving,
    with_tokens,
)


@pytest.fixture
def api(settings: Settings) -> Iterator[httpx.Client]:
    with serving(with_tokens(settings)) as client:
        yield client


def test_lead_lookup_shows_status_and_timeline_after_a_drain(
    api: httpx.Client, rt: Runtime, sim: Sim
) -> None:
    # Given an accepted record, When looked up before any drain, Then "queued" with its target,
    # age and the target's depth (issue 7, defect 13); When a drain appended it, Then its status
    # is appended with the timeline, the phone masked for the intake token that submitted it and
    # in full for the operator.
    record_id = post(api, body(leads(2))).json()["record_ids"][1]
    queued = api.get(f"/v1/leads/{record_id}", headers=AUTH)
    assert queued.status_code == 200
    assert {k: queued.json()[k] for k in ("record_id", "status", "target", "target_depth")} == {
        "record_id": record_id,
        "status": "queued",
        "target": TARGET,
        "target_depth": 2,
    }
    assert 0 <= queued.json()["age_s"] < 60
    assert api.get("/v1/leads/nonsense", headers=AUTH).status_code == 404
    assert drain_once(rt.drainer()).outcome == "appended"
    found = api.get(f"/v1/leads/{record_id}", headers=AUTH)
    assert found.status_code == 200
    data = found.json()
    assert (data["record_id"], data["status"], data["campaign_id"]) == (
        record_id,
        "appended",
        CAMPAIGN,
    )
    assert [t["status"] for t in data["timeline"]] == ["queued", "ready", "sending", "appended"]
    assert (data["phone1"], data["submitted_by"]) == ("******0001", "crm")
    in_full = api.get(f"/v1/leads/{record_id}", headers=OPS_AUTH).json()
    assert in_full["phone1"] == "2122000001" and in_full["timeline"] == data["timeline"]
    by_phone = api.get("/v1/audit", params={"phone": "(212) 200-0001"}, headers=OPS_AUTH)
    assert [r["record_id"] for r in by_phone.json()] == [record_id]
    assert api.get("/v1/audit", headers=OPS_AUTH).status_code == 422


def test_retry_preview_changes_nothing_and_retry_is_audited(
    api: httpx.Client, rt: Runtime, sim: Sim
) -> None:
    # Given a held batch (campaign stopped), When the retry is previewed, Then it is listed and
    # nothing changes; When retried over HTTP with a reason, Then it is ready again and the
    # audit shows the reason and the caller (api:<token name>, never the token).
    sim.patch_campaign(CAMPAIGN, status="STOPPED")
    ids = post(api, body(leads(3))).json()["record_ids"]
    report = drain_once(rt.drainer())
    assert report.outcome == "held"
    with rt.sessions() as session:
        events_before = len(session.scalars(select(Event)).all())
    preview = api.get(
        "/v1/batches/retry-preview", params={"status": "held", "target": "1001"}, headers=OPS_AUTH
    )
    assert preview.status_code == 200
    assert [(b["id"], b["status"]) for b in preview.json()["batches"]] == [
        (report.batch_id, "held")
    ]
    with rt.sessions() as session:
        assert len(session.scalars(select(Event)).all()) == events_before
    no_reason = api.post("/v1/batches/retry", json={"batch": report.batch_id}, headers=OPS_AUTH)
    assert no_reason.status_code == 422
    blank = {"batch": report.batch_id, "reason": "  "}
    assert api.post("/v1/batches/retry", json=blank, headers=OPS_AUTH).status_code == 422
    unknown = {"status": ["appended"], "reason": "x"}
    assert api.post("/v1/batches/retry", json=unknown, headers=OPS_AUTH).status_code == 422
    retried = api.post(
        "/v1/batches/retry",
        json={"batch": report.batch_id, "reason": "campaign restarted"},
        headers=OPS_AUTH,
    )
    assert retried.status_code == 200
    assert retried.json()["count"] == 1
    actor = retried.json()["actor"]
    assert actor == "api:ops" and OPS_TOKEN not in retried.text
    timeline = api.get(f"/v1/leads/{ids[0]}", headers=AUTH).json()["timeline"]
    assert (timeline[-1]["status"], timeline[-1]["actor"]) == (BatchStatus.READY, actor)
    assert timeline[-1]["reason"] == "campaign restarted"


def test_status_endpoint_reports_queue_depth(api: httpx.Client) -> None:
    # Given 4 queued records (no accounts file: the one account is "default"), When /v1/status
    # is read, Then the default account's section shows the target with 4 queued.
    post(api, body(leads(4)))
    status = api.get("/v1/status", headers=OPS_AUTH).json()
    (section,) = status["accounts"]
    assert (section["account"], section["client_name"]) == ("default", "SIMCLIENT")
    assert {t["target"]: t["queued"] for t in section["targets"]} == {TARGET: 4}


def test_healthz_answers_503_when_redis_is_unreachable(settings: Settings) -> None:
    # Given an intake whose Redis is unreachable, When /healthz is asked, Then 503 naming
    # redis (postgres ok); with both up, 200.
    api_settings = with_tokens(settings)
    with serving(api_settings) as api:
        assert api.get("/healthz").json() == {"redis": "ok", "postgres": "ok"}
    broken = api_settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    with serving(broken) as api:
        reply = api.get("/healthz")
        assert reply.status_code == 503
        assert reply.json()["postgres"] == "ok" and reply.json()["redis"] != "ok"
        refused = post(api, body(leads(1)))
        assert refused.status_code == 503 and "retry-after" in refused.headers


def test_http_retry_acts_only_on_what_the_preview_showed(
    api: httpx.Client, rt: Runtime, sim: Sim
) -> None:
    # Given a batch previewed held, When a tick re-sends it and its answer is lost (in_doubt)
    # before the operator confirms, Then a retry naming the previewed state moves nothing and
    # says why; a retry with no `expect` leaves the in_doubt batch alone as doubtful; naming it
    # with its current state re-sends it (the operator's deliberate choice).

    sim.patch_campaign(CAMPAIGN, status="STOPPED")
    post(api, body(leads(2)))
    report = drain_once(rt.drainer())
    assert report.outcome == "held" and report.batch_id is not None
    seen = api.get("/v1/batches/retry-preview", params={"status": "held"}, headers=OPS_AUTH).json()
    (shown,) = seen["batches"]
    with rt.sessions() as session, session.begin():
        for to in (BatchStatus.READY, BatchStatus.SENDING, BatchStatus.IN_DOUBT):
            assert move(session, report.batch_id, to, actor="tick") is not None
    expect = [{"id": shown["id"], "status": shown["status"], "version": shown["version"]}]
    stale = {"batch": report.batch_id, "reason": "campaign back", "expect": expect}
    answer = api.post("/v1/batches/retry", json=stale, headers=OPS_AUTH).json()
    assert answer["count"] == 0 and len(answer["left"]) == 1
    blind = api.post(
        "/v1/batches/retry", json={"batch": report.batch_id, "reason": "x"}, headers=OPS_AUTH
    ).json()
    assert blind["count"] == 0 and [b["id"] for b in blind["doubtful"]] == [report.batch_id]
    now = api.get("/v1/batches/retry-preview", params={"batch": report.batch_id}, headers=OPS_AUTH)
    (current,) = now.json()["batches"]
    named = [{"id": current["id"], "status": "in_doubt", "version": current["version"]}]
    chosen = {"batch": report.batch_id, "reason": "re-send, checked", "expect": named}
    assert api.post("/v1/batches/retry", json=chosen, headers=OPS_AUTH).json()["count"] == 1


def test_a_time_without_a_zone_is_read_in_appendq_timezone(settings: Settings, rt: Runtime) -> None:
    # Given APPENDQ_TIMEZONE=Asia/Tokyo and a batch held just now, When the retry preview and the
    # retry are given since/until ten minutes either side of now on Tokyo's wall clock, without a
    # zone, Then they find the batch (as `appendq retry --since` would); the same window on UTC's
    # wall clock without a zone finds nothing, and with an explicit offset it is taken as given.
    batch = make_batch(rt, BatchStatus.HELD, audit_leads(2))
    tokyo = ZoneInfo("Asia/Tokyo")
    local = with_tokens(settings).model_copy(update={"timezone": "Asia/Tokyo"})

    def window(now: datetime) -> dict[str, str]:
        return {
            "since": (now - timedelta(minutes=10)).isoformat(),
            "until": (now + timedelta(minutes=10)).isoformat(),
        }

    def previewed(api: httpx.Client, params: dict[str, str]) -> list[int]:
        reply = api.get("/v1/batches/retry-preview", params=params, headers=OPS_AUTH)
        assert reply.status_code == 200, reply.text
        return [b["id"] for b in reply.json()["batches"]]

    wall_tokyo = window(utcnow().astimezone(tokyo).replace(tzinfo=None))
    with serving(local) as api:
        assert previewed(api, wall_tokyo) == [batch]
        assert previewed(api, window(utcnow().replace(tzinfo=None))) == []
        assert previewed(api, window(utcnow())) == [batch]
        retried = {**wall_tokyo, "reason": "zone check", "status": ["held"]}
        answer = api.post("/v1/batches/retry", json=retried, headers=OPS_AUTH).json()
    assert [b["id"] for b in answer["batches"]] == [batch]
