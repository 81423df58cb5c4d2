"""The operator's actions in the console over real HTTP, real Redis, a real PostgreSQL database
and the simulator (issue #13): retry (picked or by filter, preview, reason, confirm), resume a
halt, clear a target set aside; each recorded with the signed-in token's name, refused to an
auditor, and refused without the session's CSRF value."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy import select

from appendq.db.models import AccountEvent, Batch, BatchStatus, Event, TargetEvent
from appendq.drain import halt, set_aside
from appendq.runtime import Runtime
from appendq.settings import Settings
from tests.support.console import ASIDE, HALT_REASON, Scene, hidden, signed
from tests.test_accounts_ops import cli

_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


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


def test_resume_lifts_only_the_halt_the_operator_was_shown(
    web: httpx.Client, scene: Scene, rt2: Runtime
) -> None:
    signed(web, "ops")
    page = web.get("/ui/accounts/beta/resume")
    csrf = hidden(page.text, "csrf")
    halt.halt(rt2.redis, rt2.lane("beta").keys, "LiveVox refused the login", 600)  # meanwhile
    form = {"csrf": csrf, "reason": "fixed", "seen": HALT_REASON}
    stale = web.post("/ui/accounts/beta/resume", data=form)
    assert stale.status_code == 409 and "changed since" in stale.text
    now = halt.current(rt2.redis, rt2.lane("beta").keys)
    assert now is not None and now.reason == "LiveVox refused the login"


def test_a_refused_retry_form_keeps_the_operators_ticks_and_bad_input_is_a_page(
    web: httpx.Client, scene: Scene, rt2: Runtime
) -> None:
    signed(web, "ops")
    preview = web.get("/ui/retry", params={"batch": [scene.failed, scene.in_doubt]})
    assert f'name="shown" value="{scene.failed},{scene.in_doubt}"' in preview.text
    csrf = hidden(preview.text, "csrf")
    doubt = f"{scene.in_doubt}:in_doubt:{_version(rt2, scene.in_doubt)}"
    form = {"csrf": csrf, "shown": f"{scene.failed},{scene.in_doubt}", "expect": [doubt]}
    again = web.post("/ui/retry", data={**form, "reason": "   "})
    assert again.status_code == 422
    assert re.search(rf'id="expect-{scene.in_doubt}"\s+checked', again.text)
    assert not re.search(rf'id="expect-{scene.failed}"\s+checked', again.text)
    assert web.get(f"/ui/batches/{scene.appended}?after=2147483648").status_code == 404
    assert web.get("/ui/batches/abc").status_code == 404
    garbled = web.post("/ui/retry", content=b"csrf=\xff\xfe", headers=_FORM)
    assert garbled.status_code == 422 and "UTF-8" in garbled.text


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


def _batch(rt: Runtime, batch_id: int) -> Batch:
    with rt.sessions() as session:
        found = session.get(Batch, batch_id)
        assert found is not None
        return found


def _status(rt: Runtime, batch_id: int) -> BatchStatus:
    return _batch(rt, batch_id).status


def _version(rt: Runtime, batch_id: int) -> int:
    return _batch(rt, batch_id).version
