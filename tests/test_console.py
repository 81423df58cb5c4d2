"""The operator's console over real HTTP (uvicorn in a thread), real Redis, a real PostgreSQL
database and the simulator, without a browser (``test_console_browser`` drives one): sign-in and
sessions, roles, CSRF, each page's content, and the operator's actions recorded with the token's
name (issue #13)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from appendq import console
from appendq.db.models import AccessLog, AccountEvent, Batch, BatchStatus, Event, TargetEvent
from appendq.drain import halt, set_aside
from appendq.keys import Keys
from appendq.queue import depths
from appendq.runtime import Runtime
from appendq.settings import Settings
from tests.support.console import (
    ASIDE,
    HALT_REASON,
    LEAD_PHONE,
    SECRETS,
    Scene,
    console_settings,
    hidden,
    seed,
    sign_in,
)
from tests.test_accounts_ops import cli
from tests.test_intake import serving


@pytest.fixture
def served(settings: Settings, tmp_path: Path) -> Settings:
    return console_settings(settings, tmp_path / "accounts.toml")


@pytest.fixture
def rt2(served: Settings) -> Iterator[Runtime]:
    with Runtime.build(served) as runtime:
        yield runtime


@pytest.fixture
def scene(rt2: Runtime) -> Scene:
    return seed(rt2)


@pytest.fixture
def web(served: Settings) -> Iterator[httpx.Client]:
    with serving(served) as client:
        client.follow_redirects = False
        yield client


def signed(web: httpx.Client, who: str) -> httpx.Client:
    answer = sign_in(web, who)
    assert answer.status_code == 303, answer.text
    return web


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
    assert "httponly" in low and "samesite=strict" in low and "path=/ui" in low
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


def test_an_operator_retries_with_a_reason_and_the_audit_names_the_token(
    web: httpx.Client, scene: Scene, rt2: Runtime
) -> None:
    # Given a failed and an in_doubt batch, When an operator previews both, Then the in_doubt one
    # is warned about and not ticked; When confirmed without a reason, Then 422 and nothing
    # moves; with a reason, Then the failed batch is ready again, its event by console:ops with
    # the reason, and the in_doubt one untouched.
    signed(web, "ops")
    preview = web.get("/ui/retry", params={"batch": [scene.failed, scene.in_doubt]})
    assert preview.status_code == 200
    assert "may already be at LiveVox" in preview.text
    csrf = hidden(preview.text, "csrf")
    ticked = [f"{scene.failed}:failed:{_version(rt2, scene.failed)}"]
    form = {"csrf": csrf, "batch": [scene.failed, scene.in_doubt], "expect": ticked}
    missing = web.post("/ui/retry", data={**form, "reason": ""})
    assert missing.status_code == 422 and "say why" in missing.text
    assert _status(rt2, scene.failed) == BatchStatus.FAILED
    done = web.post("/ui/retry", data={**form, "reason": "LiveVox fixed the campaign"})
    assert done.status_code == 200 and "console:ops" in done.text
    assert _status(rt2, scene.failed) == BatchStatus.READY
    assert _status(rt2, scene.in_doubt) == BatchStatus.IN_DOUBT
    with rt2.sessions() as session:
        last = session.scalars(
            select(Event).where(Event.batch_id == scene.failed).order_by(Event.id.desc())
        ).first()
    assert last is not None and last.actor == "console:ops"
    assert last.reason == "LiveVox fixed the campaign"


def test_a_retry_by_filter_previews_only_retryable_batches_of_that_filter(
    web: httpx.Client, scene: Scene
) -> None:
    signed(web, "ops")
    failed = web.get("/ui/retry", params={"status": "failed"})
    assert f"#{scene.failed}<" in failed.text and f"#{scene.held}<" not in failed.text
    beta = web.get("/ui/retry", params={"account": "beta", "status": ["held", "failed"]})
    assert f"#{scene.held}<" in beta.text and f"#{scene.failed}<" not in beta.text
    appended = web.get("/ui/retry", params={"status": "appended"})
    assert appended.status_code == 422 and "cannot be retried" in appended.text
    assert web.get("/ui/retry", params={"account": "acme"}).status_code == 422


def test_an_auditor_sees_no_action_and_cannot_post_one(
    web: httpx.Client, scene: Scene, rt2: Runtime
) -> None:
    signed(web, "audit")
    assert "Pick batch" not in web.get("/ui/batches").text
    assert web.get("/ui/retry", params={"batch": scene.failed}).status_code == 403
    page = web.get("/ui/leads")
    csrf = hidden(page.text, "csrf")  # the sign-out form's: a real session's CSRF value
    expect = f"{scene.failed}:failed:{_version(rt2, scene.failed)}"
    posted = web.post("/ui/retry", data={"csrf": csrf, "expect": expect, "reason": "try"})
    assert posted.status_code == 403 and "auditor" in posted.text
    assert page.status_code == 200
    assert _status(rt2, scene.failed) == BatchStatus.FAILED
    resume = web.post("/ui/accounts/beta/resume", data={"csrf": csrf, "reason": "fixed"})
    assert resume.status_code == 403
    assert halt.current(rt2.redis, rt2.lane("beta").keys) is not None


def test_a_form_without_the_session_csrf_value_changes_nothing(
    web: httpx.Client, scene: Scene, rt2: Runtime
) -> None:
    signed(web, "ops")
    expect = f"{scene.failed}:failed:{_version(rt2, scene.failed)}"
    for csrf in ("", "forged"):
        posted = web.post("/ui/retry", data={"csrf": csrf, "expect": expect, "reason": "x"})
        assert posted.status_code == 403 and "expired" in posted.text
    assert _status(rt2, scene.failed) == BatchStatus.FAILED


def test_resume_and_clear_are_recorded_with_the_token_name_and_reason(
    web: httpx.Client, scene: Scene, rt2: Runtime
) -> None:
    signed(web, "ops")
    page = web.get("/ui/accounts/beta/resume")
    assert HALT_REASON in page.text
    csrf = hidden(page.text, "csrf")
    done = web.post("/ui/accounts/beta/resume", data={"csrf": csrf, "reason": "role fixed"})
    assert done.status_code == 200 and "Halt lifted" in done.text
    assert halt.current(rt2.redis, rt2.lane("beta").keys) is None
    clear = web.get("/ui/accounts/beta/clear", params={"target": ASIDE})
    assert "LiveVox refuses service 1002" in clear.text
    posted = web.post(
        "/ui/accounts/beta/clear", data={"csrf": csrf, "target": ASIDE, "reason": "fixed"}
    )
    assert posted.status_code == 200
    assert ASIDE not in set_aside.current(rt2.redis, rt2.lane("beta").keys)
    with rt2.sessions() as session:
        resumed = session.scalars(select(AccountEvent).order_by(AccountEvent.id)).all()
        cleared = session.scalars(select(TargetEvent).where(TargetEvent.action == "cleared")).all()
    assert [(e.action, e.actor, e.reason) for e in resumed] == [
        ("halted", "worker@test", HALT_REASON),
        ("resumed", "console:ops", "role fixed"),
    ]
    assert [(e.actor, e.reason, e.livevox_account) for e in cleared] == [
        ("console:ops", "fixed", "beta")
    ]


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


def test_sign_out_ends_the_session(web: httpx.Client) -> None:
    signed(web, "ops")
    csrf = hidden(web.get("/ui/").text, "csrf")
    assert web.post("/ui/logout", data={"csrf": csrf}).status_code == 303
    assert web.get("/ui/").status_code == 303


@pytest.mark.usefixtures("keep_root_logging")
def test_the_cli_resume_is_recorded_with_its_reason_and_actor(
    served: Settings, rt2: Runtime
) -> None:
    beta = rt2.lane("beta")
    halt.halt(rt2.redis, beta.keys, HALT_REASON, 600)
    done = cli(served, "resume", "--account", "beta", "--reason", "role fixed", "--actor", "me")
    assert done.exit_code == 0 and "halt lifted" in done.output
    again = cli(served, "resume", "--account", "beta")
    assert "no halt was in force" in again.output
    with rt2.sessions() as session:
        events = session.scalars(select(AccountEvent)).all()
    assert [(e.livevox_account, e.action, e.actor, e.reason) for e in events] == [
        ("beta", "resumed", "me", "role fixed")
    ]


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


def _batch(rt: Runtime, batch_id: int) -> Batch:
    with rt.sessions() as session:
        found = session.get(Batch, batch_id)
        assert found is not None
        return found


def _status(rt: Runtime, batch_id: int) -> BatchStatus:
    return _batch(rt, batch_id).status


def _version(rt: Runtime, batch_id: int) -> int:
    return _batch(rt, batch_id).version
