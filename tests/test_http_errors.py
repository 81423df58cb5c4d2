"""Issue 7 at the HTTP edge: every bad input is a 4xx naming what is wrong, never a 500, never a
partial enqueue; over real HTTP (uvicorn in a thread) against real Redis and PostgreSQL."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from appendq.drain.tick import drain_once
from appendq.http.validation import MAX_DEPTH
from appendq.ops.retry import REASON_MAX
from appendq.runtime import Runtime
from appendq.settings import Settings
from appendq.target import ID_MAX
from tests.conftest import Sim, phone
from tests.test_intake import AUTH, OPS_AUTH, TARGET, body, leads, post, serving, with_tokens

BIG = ID_MAX + 1  # 9223372036854775808


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return with_tokens(settings)


@pytest.fixture
def api(api_settings: Settings) -> Iterator[httpx.Client]:
    with serving(api_settings) as client:
        yield client


def raw_body(records: str, target: str = '"service": 1001') -> bytes:
    return ("{" + target + ', "records": ' + records + "}").encode()


def test_out_of_range_target_ids_are_422_naming_the_field(api: httpx.Client, rt: Runtime) -> None:
    # Given service/campaign ids past BIGINT (and 0, negative, a float, a bool), When posted,
    # Then 422 naming the field and nothing queued (defect 1: one such 202 stopped all draining).
    for target, value in [
        ("service", BIG),
        ("campaign", BIG),
        ("service", 10**40),
        ("service", 0),
        ("service", -1),
        ("service", 1001.5),
        ("service", True),
    ]:
        reply = post(api, json.dumps({target: value, "records": leads(1)}).encode())
        assert reply.status_code == 422, (target, value)
        assert reply.json()["field"] == target
    assert post(api, raw_body("[]", '"service": 1e400')).status_code == 422
    assert post(api, raw_body("[]", '"service": NaN')).status_code == 422
    assert rt.queue.targets() == []
    top = post(api, json.dumps({"service": ID_MAX, "records": leads(1)}).encode())
    assert top.status_code == 202 and top.json()["target"] == f"service:{ID_MAX}"


def test_deep_nesting_is_400_in_the_body_or_inside_a_field(api: httpx.Client, rt: Runtime) -> None:
    # Given bodies nested deeper than MAX_DEPTH (a bare "[" x 1000, brackets x 100,000 inside a
    # record field), When posted, Then 400 saying so; a depth of MAX_DEPTH inside a string or
    # within the limit is no problem (the record is refused for its field, not the request).
    assert post(api, b"[" * 1000).status_code == 400
    assert "deeper than 32" in post(api, b"[" * 1000).json()["detail"]
    deep = "[" * 100_000 + "]" * 100_000
    reply = post(api, raw_body('[{"phone1": "2122000001", "extra1": ' + deep + "}]"))
    assert reply.status_code == 400 and "deeper than" in reply.json()["detail"]
    within = "[" * (MAX_DEPTH - 3) + "]" * (MAX_DEPTH - 3)
    in_text = "[" * 40
    records = (
        f'[{{"phone1": "{phone(1)}", "extra1": {within}}}, '
        f'{{"phone1": "{phone(2)}", "extra2": "{in_text}"}}]'
    )
    ok = post(api, raw_body(records))
    assert ok.status_code == 202
    assert ok.json()["accepted"] == 1
    assert [(e["index"], e["field"]) for e in ok.json()["errors"]] == [(0, "extra1")]
    assert rt.queue.depth() == 1


def test_special_numbers_are_refused_per_record_naming_the_field(
    api: httpx.Client, rt: Runtime
) -> None:
    # Given records holding Infinity, -Infinity, NaN and 1e400 beside a good one, When posted,
    # Then 202: the good one queued, each bad one refused naming index and field (never "inf").
    records = (
        f'[{{"phone1": "{phone(1)}", "totalAmount": Infinity}},'
        f'{{"phone1": "{phone(2)}", "extra3": -Infinity}},'
        f'{{"phone1": "{phone(3)}", "amountToSpeak": NaN}},'
        f'{{"phone1": "{phone(4)}", "minimumPaymentAmount": 1e400}},'
        f'{{"phone1": "{phone(5)}", "totalAmount": 12.5}}]'
    )
    reply = post(api, raw_body(records))
    assert reply.status_code == 202
    receipt = reply.json()
    assert receipt["accepted"] == 1
    assert [(e["index"], e["field"]) for e in receipt["errors"]] == [
        (0, "totalAmount"),
        (1, "extra3"),
        (2, "amountToSpeak"),
        (3, "minimumPaymentAmount"),
    ]
    assert all("finite" in e["message"] for e in receipt["errors"])
    (queued,) = rt.queue.claim(TARGET, 10).records
    assert queued.payload["totalAmount"] == "12.5"


def test_duplicate_keys_are_ambiguous(api: httpx.Client, rt: Runtime) -> None:
    # Given a record with phone1 given twice, and a body with records given twice, When posted,
    # Then the record is refused naming index and field ("more than once"), the other record
    # goes in; the body with a duplicated top-level key is 422 and nothing is queued.
    records = (
        f'[{{"phone1": "{phone(1)}", "phone1": "{phone(2)}"}}, {{"phone1": "{phone(3)}"}},'
        f'{{"phone1": "{phone(4)}", "firstName": "A", "firstName": "B"}}]'
    )
    reply = post(api, raw_body(records))
    assert reply.status_code == 202 and reply.json()["accepted"] == 1
    errors = reply.json()["errors"]
    assert [(e["index"], e["field"]) for e in errors] == [(0, "phone1"), (2, "firstName")]
    assert all("more than once" in e["message"] for e in errors)
    twice = raw_body(f'[{{"phone1": "{phone(5)}"}}], "records": []')
    refused = post(api, twice)
    assert refused.status_code == 422 and refused.json()["field"] == "records"
    assert rt.queue.depth() == 1


def test_only_utf8_json_is_taken(api: httpx.Client, rt: Runtime) -> None:
    # Given the same good body as UTF-16 (with BOM), as Latin-1 declared by charset, as
    # text/plain, and as UTF-8 with a BOM, When posted, Then UTF-16 is 400 "not UTF-8", a
    # declared non-UTF-8 charset and a non-JSON type are 415; UTF-8 with a BOM is accepted.
    good = json.dumps({"service": 1001, "records": [{"phone1": phone(1), "firstName": "José"}]})
    utf16 = post(api, good.encode("utf-16"))
    assert utf16.status_code == 400 and "UTF-16" in utf16.json()["detail"]
    latin = post(
        api, good.encode("latin-1"), **{"Content-Type": "application/json; charset=latin-1"}
    )
    assert latin.status_code == 415 and "UTF-8" in latin.json()["detail"]
    plain = post(api, good.encode(), **{"Content-Type": "text/plain"})
    assert plain.status_code == 415
    assert post(api, b"\xff" + good.encode()).status_code == 400
    assert rt.queue.depth() == 0
    bom = post(
        api, b"\xef\xbb\xbf" + good.encode(), **{"Content-Type": "application/json; charset=utf-8"}
    )
    assert bom.status_code == 202 and bom.json()["accepted"] == 1


def test_unencodable_text_is_refused_and_echoed_safely(api: httpx.Client, rt: Runtime) -> None:
    # Given a record with an unpaired surrogate in a value and in a key, When posted, Then 202
    # with both refused naming their index, the answer pure ASCII JSON (escapes), no 500.
    records = (
        f'[{{"phone1": "{phone(1)}", "firstName": "a\\ud800b"}}, '
        f'{{"phone1": "{phone(2)}", "\\udc00": 1}}]'
    )
    reply = post(api, raw_body(records))
    assert reply.status_code == 202 and reply.json()["accepted"] == 0
    assert [e["index"] for e in reply.json()["errors"]] == [0, 1]
    assert reply.json()["errors"][0]["field"] == "firstName"
    assert reply.content.isascii()
    assert rt.queue.depth() == 0


def test_phone_budget_is_413_before_validation(api_settings: Settings, rt: Runtime) -> None:
    # Given APPENDQ_INTAKE_MAX_PHONES=100, When a request holds 4 records x 30 phones, Then 413
    # naming the budget and nothing queued; 3 x 30 (90) is accepted.
    limited = api_settings.model_copy(update={"intake_max_phones": 100})

    def records(n: int) -> list[dict[str, Any]]:
        return [
            {"phone1": phone(i * 30), "phone2": [phone(i * 30 + j) for j in range(1, 30)]}
            for i in range(n)
        ]

    with serving(limited) as api:
        refused = post(api, body(records(4)))
        assert (
            refused.status_code == 413 and "APPENDQ_INTAKE_MAX_PHONES" in refused.json()["detail"]
        )
        assert rt.queue.depth() == 0
        assert post(api, body(records(3))).status_code == 202
    assert rt.queue.depth() == 3


def test_validation_past_its_cpu_budget_is_413_and_nothing_is_queued(
    api_settings: Settings, rt: Runtime
) -> None:
    # Given APPENDQ_INTAKE_VALIDATION_BUDGET_S far below what 2,000 records with slow-path
    # phones cost, When they are posted, Then 413 naming the budget and nothing queued; with
    # the default budget the same request is accepted whole.
    slow = [
        {
            "phone1": f"+44 20 7946 {i:04d}",
            "phone2": ["\uff11\uff12\uff11\uff12\uff15\uff15\uff15\uff10\uff11\uff14\uff12"],
        }
        for i in range(2_000)
    ]
    tight = api_settings.model_copy(update={"intake_validation_budget_s": 0.001})
    with serving(tight) as api:
        refused = post(api, body(slow))
        assert refused.status_code == 413
        assert "APPENDQ_INTAKE_VALIDATION_BUDGET_S" in refused.json()["detail"]
        assert rt.queue.depth() == 0
    with serving(api_settings) as api:
        assert post(api, body(slow)).status_code == 202
    assert rt.queue.depth() == 2_000


def test_audit_and_retry_parameters_past_bigint_or_with_nul_are_4xx(
    api: httpx.Client, rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the ops endpoints, When given a batch past BIGINT, an account with NUL, targets past
    # BIGINT, a retry reason with NUL, over 500 characters or given twice, Then each is a 4xx
    # with a message (no 500, no traceback), and nothing is logged at ERROR.
    bad_gets = [
        ("/v1/audit", {"batch": str(BIG)}),
        ("/v1/audit", {"batch": "-1"}),
        ("/v1/audit", {"account": "a\x00b"}),
        ("/v1/audit", {"phone": "212\x00555"}),
        ("/v1/audit", {"record": "x" * 5000}),
        ("/v1/batches/retry-preview", {"batch": str(BIG)}),
        ("/v1/batches/retry-preview", {"target": f"service:{BIG}"}),
        ("/v1/batches/retry-preview", {"target": str(BIG)}),
        ("/v1/batches/retry-preview", {"status": "held\x00"}),
    ]
    with caplog.at_level(logging.ERROR):
        for path, params in bad_gets:
            reply = api.get(path, params=params, headers=OPS_AUTH)
            assert 400 <= reply.status_code < 500, (path, params, reply.text)
            assert reply.json()["detail"], (path, params)
        bad_retries: list[dict[str, Any]] = [
            {"batch": BIG, "reason": "x"},
            {"target": BIG, "reason": "x"},
            {"target": f"campaign:{BIG}", "reason": "x"},
            {"batch": 1, "reason": "a\x00b"},
            {"batch": 1, "reason": "r" * (REASON_MAX + 1)},
            {"batch": 1, "reason": "a\ud800b"},
        ]
        for payload in bad_retries:
            reply = api.post("/v1/batches/retry", content=json.dumps(payload), headers=OPS_AUTH)
            assert reply.status_code == 422, (payload, reply.text)
        twice = b'{"batch": 1, "reason": "x", "reason": "y"}'
        assert api.post("/v1/batches/retry", content=twice, headers=OPS_AUTH).status_code == 422
        deep = b'{"batch": 1, "reason": ' + b"[" * 5000 + b"}"
        assert api.post("/v1/batches/retry", content=deep, headers=OPS_AUTH).status_code == 400
        huge = json.dumps({"batch": 1, "reason": "r" * 5_000_000}).encode()
        assert api.post("/v1/batches/retry", content=huge, headers=OPS_AUTH).status_code == 413
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_reason_at_the_cap_is_recorded(api: httpx.Client, rt: Runtime, sim: Sim) -> None:
    # Given a held batch, When retried with a reason of exactly REASON_MAX, Then 200 and the
    # audit holds it whole; one character more was refused (previous test).
    sim.patch_campaign(5001, status="STOPPED")
    ids = post(api, body(leads(1))).json()["record_ids"]
    report = drain_once(rt.drainer())
    reason = "r" * REASON_MAX
    reply = api.post(
        "/v1/batches/retry", json={"batch": report.batch_id, "reason": reason}, headers=OPS_AUTH
    )
    assert reply.status_code == 200 and reply.json()["count"] == 1
    timeline = api.get(f"/v1/leads/{ids[0]}", headers=AUTH).json()["timeline"]
    assert timeline[-1]["reason"] == reason


def test_database_error_that_validation_missed_is_json_and_logged_without_data(
    api_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a route that sends a NUL to PostgreSQL (a real DataError, as a missed validation
    # would), When called, Then 422 JSON without the SQL or the value, and one ERROR line naming
    # the error class and route only; a route raising anything else is a JSON 500 alike.
    from appendq.http.app import create_app

    secret_value = "2125550123\x00"
    app = create_app(api_settings)

    def boom() -> None:
        with app.state.deps.rt.engine.connect() as conn:
            conn.execute(text("SELECT :v"), {"v": secret_value})

    def other() -> None:
        raise RuntimeError(f"leak {secret_value}")

    app.get("/boom")(boom)
    app.get("/other")(other)
    with serving(api_settings, app=app) as api, caplog.at_level(logging.INFO):
        reply = api.get("/boom")
        crash = api.get("/other")
    assert reply.status_code == 422 and "DataError" in reply.json()["detail"]
    assert "SELECT" not in reply.text and "2125550123" not in reply.text
    assert crash.status_code == 500 and crash.json() == {"detail": "internal error (RuntimeError)"}
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "DataError" in logged and "/boom" in logged and "RuntimeError" in logged
    assert "2125550123" not in logged and "SELECT" not in logged


def test_lookup_of_a_queued_duplicate_and_of_a_cleared_target(
    api: httpx.Client, rt: Runtime
) -> None:
    # Given two records with one phone (the second a duplicate), When each is looked up before a
    # drain, Then both are "queued", the second naming the first; When the target's queue is
    # emptied behind the audit's back, Then 404 saying it is no longer queued; an unknown
    # (well-formed) id is 404 "unknown".
    receipt = post(api, body([{"phone1": phone(1)}, {"phone1": phone(1)}])).json()
    first, dup = receipt["record_ids"][0], receipt["duplicates"][0]["record_id"]
    assert api.get(f"/v1/leads/{first}", headers=AUTH).json()["status"] == "queued"
    second = api.get(f"/v1/leads/{dup}", headers=AUTH).json()
    assert (second["status"], second["duplicate_of"]) == ("queued", first)
    rt.redis.delete(rt.keys.queue(TARGET))
    gone = api.get(f"/v1/leads/{first}", headers=AUTH)
    assert gone.status_code == 404 and "no longer in that queue" in gone.json()["detail"]
    unknown = api.get("/v1/leads/01890000-0000-7000-8000-000000000000", headers=AUTH)
    assert unknown.status_code == 404 and "unknown" in unknown.json()["detail"]
