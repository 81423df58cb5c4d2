"""Prometheus metrics read from Redis and PostgreSQL at scrape time, parsed as Prometheus text."""

from __future__ import annotations

import time

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from appendq.drain.tick import drain_once
from appendq.metrics import registry_for
from appendq.runtime import Runtime
from appendq.settings import Settings
from producer import connect
from tests.conftest import Sim
from tests.support.procs import free_port
from tests.test_intake import AUTH, TOKEN, body, leads, serving

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
#: The one account of a deployment without an accounts file, as a label.
DEFAULT = ("account", "default")


def parse(text: str) -> Samples:
    """Every sample of a scrape, keyed by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(rt: Runtime) -> Samples:
    return parse(generate_latest(registry_for(rt)).decode())


def test_metrics_endpoint_shows_queue_depth_per_target(settings: Settings) -> None:
    # Given 7 records posted for service 1001 and 3 for campaign 9001, When /metrics is scraped
    # (no token needed), Then it parses as Prometheus text with those depths and both sources up.
    with serving(settings.model_copy(update={"api_tokens": [SecretStr(TOKEN)]})) as api:
        api.post("/v1/leads", content=body(leads(7)), headers=AUTH)
        api.post("/v1/leads", content=body(leads(3, start=50), campaign=9001), headers=AUTH)
        reply = api.get("/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    samples = parse(reply.text)
    assert samples[("appendq_queue_depth", (DEFAULT, ("target", "service:1001")))] == 7
    assert samples[("appendq_queue_depth", (DEFAULT, ("target", "campaign:9001")))] == 3
    age = samples[("appendq_queue_oldest_age_seconds", (DEFAULT, ("target", "service:1001")))]
    assert 0 <= age < 60
    assert samples[("appendq_source_up", (("source", "redis"),))] == 1
    assert samples[("appendq_source_up", (("source", "postgres"),))] == 1


def test_metrics_read_what_another_process_did(sim: Sim, settings: Settings, rt: Runtime) -> None:
    # Given one batch appended (4 records, one of them a duplicate) and one batch held (campaign
    # stopped), done by a Runtime other than the scraper's, When scraped, Then batches, records
    # by status, call latency, last append time, rate budget and the held target are right.
    with connect(settings) as producer:
        producer.enqueue("service:1001", [*leads(3), leads(1)[0]])
    assert drain_once(rt.drainer()).outcome == "appended"
    sim.patch_campaign(5001, status="STOPPED")
    with connect(settings) as producer:
        producer.enqueue("service:1001", leads(2, start=10))
    assert drain_once(rt.drainer()).outcome == "held"
    scraper = Runtime.build(settings)
    try:
        samples = scrape(scraper)
    finally:
        scraper.close()
    batches = {k[1][1][1]: v for k, v in samples.items() if k[0] == "appendq_batches"}
    assert batches["appended"] == 1 and batches["held"] == 1 and batches["in_doubt"] == 0
    assert {k[1][0] for k, v in samples.items() if k[0] == "appendq_batches"} == {DEFAULT}
    records = {k[1][1][1]: v for k, v in samples.items() if k[0] == "appendq_records"}
    assert (records["appended"], records["duplicate"], records["held"]) == (3, 1, 2)
    assert samples[("appendq_append_call_seconds_bucket", (("le", "+Inf"),))] == 1
    assert samples[("appendq_append_call_seconds_gcount", ())] == 1
    assert abs(samples[("appendq_last_append_timestamp_seconds", ())] - time.time()) < 60
    assert samples[("appendq_rate_budget_remaining", (DEFAULT,))] == settings.rate_max_calls - 1
    assert samples[("appendq_halted", (DEFAULT,))] == 0
    assert samples[("appendq_target_held", (DEFAULT, ("target", "service:1001")))] == 1
    assert samples[("appendq_queue_depth", (DEFAULT, ("target", "service:1001")))] == 0


def test_scrape_answers_when_redis_is_down(settings: Settings) -> None:
    # Given Redis unreachable, When scraped, Then the scrape still answers: redis is down, the
    # PostgreSQL families are there, no queue depth is made up.
    broken = Runtime.build(
        settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    )
    try:
        samples = scrape(broken)
    finally:
        broken.close()
    assert samples[("appendq_source_up", (("source", "redis"),))] == 0
    assert samples[("appendq_source_up", (("source", "postgres"),))] == 1
    assert ("appendq_batches", (DEFAULT, ("status", "appended"))) in samples
    assert not any(name == "appendq_queue_depth" for name, _ in samples)
