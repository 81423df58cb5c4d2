"""The operator's console over real HTTP (uvicorn in a thread), real Redis, a real PostgreSQL
database and the simulator, without a browser (``test_console_browser`` drives one): sign-in and
sessions, roles, CSRF, each page's content, and the operator's actions recorded with the token's
name (issue #13)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from appendq import console
from appendq.db.models import AccessLog, Batch
from appendq.keys import Keys
from appendq.queue import depths
from appendq.runtime import Runtime
from appendq.settings import Settings
from tests.support.console import (
    HALT_REASON,
    LEAD_PHONE,
    SECRETS,
    TOKENS,
    Scene,
    hidden,
    sign_in,
    signed,
)
from tests.test_intake import serving, with_tokens


def test_sign_in_sets_a_strict_httponly_cookie_and_pages_need_it(web: httpx.Client) -> None:
    # Given no session, When a page is asked, Then a redirect to the sign-in page that comes
    # back to it; the live part answers 401. When an operator signs in, Then the cookie is
    # HttpOnly, SameSite=Strict, scoped to /ui, and holds neither the token nor its hash.
    first = web.get("/ui/batches?status=failed")
    assert first.status_code == 303
    assert first.headers["location"] == "/ui/login?next=%2Fui%2Fbatches%3Fstatus%3Dfailed"
    live = web.get("/ui/live")  # htmx swaps in "sign in again" and stops polling (286)
    assert live.status_code == 286 and "sign in again" in live.text
    assert web.get("/ui/charts.json").status_code == 401
    answer = sign_in(web, "ops")
    assert (answer.status_code, answer.headers["location"]) == (303, "/ui/")
    cookie = next(c for c in answer.headers.get_list("set-cookie") if "appendq_console=" in c)
    low = cookie.lower()
    assert "httponly" in low and "samesite=lax" in low and "path=/ui" in low
    assert "max-age" not in low and "expires" not in low  # ends with the browser
    assert "console-ops-secret" not in cookie
    page = web.get("/ui/")
    assert page.status_code == 200 and "Overview" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_a_wrong_token_an_intake_token_or_a_forged_form_does_not_sign_in(
    web: httpx.Client,
) -> None:
    # Given the sign-in page, When an unknown token is posted, Then 401 and no session; an intake
    # token: 403 saying why; a post without the page's one-time value (another site's form):
    # 403, no session.
    page = web.get("/ui/login")
    nonce = hidden(page.text, "nonce")
    wrong = web.post("/ui/login", data={"nonce": nonce, "token": "not-a-token"})
    assert wrong.status_code == 401 and "Unknown token" in wrong.text
    intake = sign_in(web, "crm")
    assert intake.status_code == 403 and "intake token" in intake.text
    web.cookies.clear()
    forged = web.post("/ui/login", data={"nonce": "x", "token": "console-ops-secret-1111111111"})
    assert forged.status_code == 403
    assert "appendq_console=" not in (forged.headers.get("set-cookie") or "")
    assert web.get("/ui/").status_code == 303


def test_sign_in_goes_back_to_the_page_asked_but_never_off_the_console(
    web: httpx.Client,
) -> None:
    for asked, landing in [
        ("/ui/batches?status=held", "/ui/batches?status=held"),
        ("//evil.example/ui/", "/ui/"),
        ("https://evil.example/", "/ui/"),
        ("/ui/\\evil.example", "/ui/"),
    ]:
        web.cookies.clear()
        page = web.get("/ui/login", params={"next": asked})
        form = {"nonce": hidden(page.text, "nonce"), "token": SECRETS["ops"], "next": asked}
        answer = web.post("/ui/login", data=form)
        assert (answer.status_code, answer.headers["location"]) == (303, landing), asked


def test_overview_shows_each_account_target_and_halt(web: httpx.Client, scene: Scene) -> None:
    # Given the seeded scenario, When the overview is read, Then each account's queued counts,
    # beta's halt with its reason, the set-aside target, the hold reason and batches by status.
    page = signed(web, "audit").get("/ui/")
    assert page.status_code == 200
    text = page.text
    assert 'data-queued="acme">5<' in text and 'data-queued="beta">5<' in text
    assert HALT_REASON in text and "set aside" in text and "no campaign today" in text
    assert 'data-status="failed">1<' in text and 'data-status="appended">1<' in text
    assert "Resume account beta" not in text  # an auditor gets no button
    live = web.get("/ui/live")
    assert live.status_code == 200 and 'id="live"' in live.text and "<html" not in live.text


def test_charts_give_24_hours_of_appended_records_and_depth(
    web: httpx.Client, scene: Scene
) -> None:
    data = signed(web, "audit").get("/ui/charts.json").json()
    by = {a["account"]: a for a in data["accounts"]}
    assert set(by) == {"acme", "beta"}
    minutes, appended = by["acme"]["appended"]
    assert len(minutes) == 24 * 60 and sum(appended) == 3 and sum(by["beta"]["appended"][1]) == 0
    assert len(by["acme"]["depth"][0]) == 60 and max(by["acme"]["depth"][1]) == 11


def test_batches_filter_paginate_and_a_batch_shows_masked_records_and_events(
    web: httpx.Client, scene: Scene, rt2: Runtime
) -> None:
    signed(web, "audit")
    failed = web.get("/ui/batches", params={"status": "failed"})
    assert f"#{scene.failed}<" in failed.text and f"#{scene.held}<" not in failed.text
    beta = web.get("/ui/batches", params={"account": "beta"})
    assert f"#{scene.held}<" in beta.text and f"#{scene.failed}<" not in beta.text
    bad = web.get("/ui/batches", params={"campaign": "12x"})
    assert bad.status_code == 422 and "campaign" in bad.text
    page = web.get(f"/ui/batches/{scene.appended}")
    assert page.status_code == 200
    assert "******0142" in page.text and LEAD_PHONE not in page.text
    assert "sending" in page.text and "appended" in page.text
    assert web.get("/ui/batches/999999").status_code == 404
    with rt2.sessions() as session:
        logged = session.scalars(select(AccessLog).where(AccessLog.channel == "ui")).all()
    assert [(a.actor, a.action, a.records) for a in logged] == [("console:audit", "batch", 3)]


def test_lead_search_finds_a_lead_and_its_timeline(web: httpx.Client, scene: Scene) -> None:
    signed(web, "audit")
    found = web.get("/ui/leads", params={"phone": "(212) 555-0142"})
    assert found.status_code == 200
    assert scene.lead_id in found.text and "******0142" in found.text
    for step in ("queued", "sending", "appended"):
        assert step in found.text
    by_id = web.get("/ui/leads", params={"record": scene.lead_id})
    assert "1 match." in by_id.text
    assert web.get("/ui/leads", params={"record": "nope"}).status_code == 422


def test_a_token_limited_to_an_account_sees_and_acts_on_it_alone(
    web: httpx.Client, scene: Scene
) -> None:
    signed(web, "ops-acme")
    overview = web.get("/ui/").text
    assert 'data-account="acme"' in overview and 'data-account="beta"' not in overview
    assert web.get(f"/ui/batches/{scene.held}").status_code == 404
    assert web.get("/ui/batches", params={"account": "beta"}).status_code == 403
    assert web.get("/ui/accounts/beta/resume").status_code == 403
    found = web.get("/ui/leads", params={"phone": "2123000040"})
    assert "0 matches" in found.text


def test_a_new_secret_for_the_same_token_name_ends_its_sessions(
    served: Settings, rt2: Runtime
) -> None:
    with serving(served) as first:
        first.follow_redirects = False
        signed(first, "ops")
        cookie = first.cookies.get("appendq_console")
    rotated = with_tokens(served, "ops:operator:a-brand-new-secret-999999", *TOKENS[1:])
    with serving(rotated) as second:
        second.follow_redirects = False
        second.cookies.set("appendq_console", cookie or "", path="/ui")
        assert second.get("/ui/").status_code == 303


def test_without_tokens_the_console_needs_no_sign_in_but_forms_still_need_csrf(
    served: Settings, scene: Scene, rt2: Runtime
) -> None:
    open_settings = served.model_copy(update={"api_tokens": []})
    with serving(open_settings, allow_no_auth=True) as web:
        web.follow_redirects = False
        page = web.get("/ui/")
        assert page.status_code == 200 and "insecure-no-auth" in page.text
        assert web.get("/ui/login").status_code == 303
        csrf = hidden(web.get(f"/ui/retry?batch={scene.failed}").text, "csrf")
        with rt2.sessions() as session:
            failed = session.get(Batch, scene.failed)
            assert failed is not None
            expect = f"{failed.id}:failed:{failed.version}"
        forged = web.post("/ui/retry", data={"csrf": "", "expect": expect, "reason": "x"})
        assert forged.status_code == 403
        done = web.post("/ui/retry", data={"csrf": csrf, "expect": expect, "reason": "demo"})
        assert done.status_code == 200 and "1 batch back to ready" in done.text
        assert "console:anonymous" in done.text


def test_sign_out_ends_the_session(web: httpx.Client) -> None:
    signed(web, "ops")
    csrf = hidden(web.get("/ui/").text, "csrf")
    assert web.post("/ui/logout", data={"csrf": csrf}).status_code == 303
    assert web.get("/ui/").status_code == 303


def test_depth_samples_keep_each_minutes_largest_and_24_hours(
    redis_client: Any, keys: Keys
) -> None:
    now = 1_800_000_000.0  # a minute boundary
    depths.sample(redis_client, keys, 7, now + 5)
    depths.sample(redis_client, keys, 3, now + 25)  # the same minute, smaller: kept 7
    depths.sample(redis_client, keys, 9, now + 61)
    depths.sample(redis_client, keys, 4, now - depths.KEEP_S - 60)  # too old once a newer comes
    depths.sample(redis_client, keys, 12, now + 125)
    found = depths.series(redis_client, keys, now - 2 * depths.KEEP_S)
    assert [(s.minute - now, s.depth) for s in found] == [(0, 7), (60, 9), (120, 12)]
    assert depths.series(redis_client, keys, now + 60) == found[1:]


def test_static_files_are_served_and_the_vendored_ones_match_their_record(
    web: httpx.Client,
) -> None:
    vendor = Path(console.__file__).parent / "static" / "vendor"
    table = (vendor / "README.md").read_text()
    listed = re.findall(r"^\| (\S+) \| .* \| ([0-9a-f]{64}) \|$", table, re.MULTILINE)
    assert {name for name, _ in listed} == {p.name for p in vendor.glob("*.min.*")}
    for name, digest in listed:
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name
        licence = name.split(".iife")[0].split(".min")[0] + ".LICENSE"
        assert (vendor / licence).exists(), licence
    templates = Path(console.__file__).parent / "templates"
    used = set()
    for page in templates.glob("*.html"):
        used |= set(re.findall(r'(?:src|href)="/ui/static/([^"]+)"', page.read_text()))
    assert used, "no template uses a static file"
    for path in used:
        assert web.get(f"/ui/static/{path}").status_code == 200, path
