"""The console's tests (issue #13): a seeded scenario over two LiveVox accounts, the tokens of
each role, and a client that signs in as a browser does (the sign-in form's one-time value, the
session cookie, each form's CSRF value).

The scenario (``seed``), on the test simulator (client SIMCLIENT, service 1001, campaign 5001):

- acme: one batch appended by a real drain (3 records, LEAD_PHONE among them), a failed batch
  (2), an in_doubt batch (1), and 5 records queued on service:1001;
- beta: a held batch (2) with its target waiting for a reason, 3 records queued on
  service:1001, 2 on service:1002 which is set aside, and the account halted (403);
- an hour of queue-depth samples for each account (the 24-hour chart).

Fixtures: ``served`` (the settings), ``rt2`` (a Runtime on them), ``scene`` (``seed``), ``web``
(the app under uvicorn and a client that does not follow redirects); ``signed`` signs it in.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from appendq.batches.store import BatchStore
from appendq.db.models import BatchStatus
from appendq.drain import halt, set_aside
from appendq.drain.tick import drain_once
from appendq.queue import depths
from appendq.queue.item import QueuedRecord, new_record_id
from appendq.runtime import Runtime
from appendq.settings import Settings
from tests.test_accounts_ops import ACCOUNT, batch_of
from tests.test_intake import serving, with_tokens

SECRETS = {
    "ops": "console-ops-secret-1111111111",
    "audit": "console-audit-secret-2222222222",
    "ops-acme": "console-ops-acme-secret-3333333",
    "crm": "console-crm-secret-4444444444",
}
TOKENS = (
    f"ops:operator:{SECRETS['ops']}",
    f"audit:auditor:{SECRETS['audit']}",
    f"ops-acme:operator@acme:{SECRETS['ops-acme']}",
    f"crm:intake:{SECRETS['crm']}",
)
TARGET = "service:1001"
ASIDE = "service:1002"
LEAD_PHONE = "2125550142"
HALT_REASON = "LiveVox answered 403: this user may not append"


def console_settings(settings: Settings, path: Path) -> Settings:
    """``settings`` serving acme and beta (both on the test simulator) with ``TOKENS``."""
    tables = (ACCOUNT.format(name=n, url=settings.livevox_base_url) for n in ("acme", "beta"))
    path.write_text("".join(tables))
    return with_tokens(settings, *TOKENS).model_copy(update={"accounts_file": str(path)})


def records(n: int, start: int, phone: str | None = None) -> list[QueuedRecord]:
    now = time.time()
    found = []
    for i in range(n):
        number = phone if phone is not None and i == 0 else f"212300{start + i:04d}"
        payload = {"phone1": number, "account": f"L{start + i}"}
        found.append(QueuedRecord(new_record_id(), now - 600 + i, payload))
    return found


@dataclass(frozen=True)
class Scene:
    appended: int
    failed: int
    in_doubt: int
    held: int
    lead_id: str  # the record with LEAD_PHONE (appended)


def seed(rt: Runtime) -> Scene:
    acme, beta = rt.lane("acme"), rt.lane("beta")
    lead = records(3, 0, LEAD_PHONE)
    acme.queue.push(TARGET, lead)
    report = drain_once(rt.drainer("acme"))
    assert report.outcome == "appended", report
    failed = batch_of(rt, "acme", BatchStatus.FAILED, records(2, 10))
    in_doubt = batch_of(rt, "acme", BatchStatus.IN_DOUBT, records(1, 20))
    acme.queue.push(TARGET, records(5, 30))
    held = batch_of(rt, "beta", BatchStatus.HELD, records(2, 40))
    beta.queue.push(TARGET, records(3, 50))
    beta.queue.push(ASIDE, records(2, 60))
    with rt.sessions() as session, session.begin():
        store = BatchStore(session, "worker@test")
        store.set_target_state("beta", TARGET, campaign_id=None, hold_reason="no campaign today")
    set_aside.set_aside(
        rt.redis,
        beta.keys,
        rt.sessions,
        ASIDE,
        kind="refused",
        reason="LiveVox refuses service 1002",
        actor="worker@test",
        account="beta",
    )
    halt.halt(rt.redis, beta.keys, HALT_REASON, 600)
    halt.record(rt.sessions, "beta", "halted", HALT_REASON, "worker@test")
    now = time.time()
    for minute in range(60):
        depths.sample(rt.redis, acme.keys, 5 + minute % 7, now - 60 * (60 - minute))
        depths.sample(rt.redis, beta.keys, 5, now - 60 * (60 - minute))
    return Scene(report.batch_id or 0, failed, in_doubt, held, str(lead[0].id))


# The fixtures of the console's tests (tests/conftest.py loads this module as a plugin).


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


_HIDDEN = re.compile(r'<input type="hidden" name="(nonce|csrf)" value="([^"]+)"')


def hidden(html: str, name: str) -> str:
    """The value of the page's hidden field ``name`` (nonce, csrf)."""
    found = [v for k, v in _HIDDEN.findall(html) if k == name]
    assert found, f"no hidden {name} field in the page"
    return found[0]


def sign_in(client: httpx.Client, who: str) -> httpx.Response:
    """Sign ``client`` in as ``who`` (a key of SECRETS), as a browser does; the answer."""
    page = client.get("/ui/login")
    form = {"nonce": hidden(page.text, "nonce"), "token": SECRETS[who], "next": ""}
    return client.post("/ui/login", data=form)
