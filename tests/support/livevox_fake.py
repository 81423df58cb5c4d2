"""A scripted LiveVox over ``httpx.MockTransport`` for the client's narrow unit tests
(``tests/test_livevox_client*.py``): it answers login itself and hands every other request to
the test's handler. End-to-end behaviour is tested against the real HTTP simulator elsewhere."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from appendq.livevox.client import LiveVoxClient
from appendq.settings import Settings

TOKEN = "tok-7Hq2-SECRET"
PASSWORD = "pw-Zx9!-SECRET"
SESSION = "0f4c5d7e-2b1a-4c3d-9e8f-a1b2c3d4e5f6"
SESSION_2 = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
PHONE = "2125551234"
BASE = "http://livevox.test"
LOGIN_PATH = "/session/v6.0/login"
SEARCH_PATH = "/campaign/v6.0/campaigns/search"
APPEND_PATH = "/campaign/v6.0/campaigns/9001/transactions"
LIST_PATH = "/campaign/v6.0/campaigns/9001/transactionList"
DAY = datetime(2024, 11, 28, tzinfo=UTC)
Handler = Callable[[httpx.Request], httpx.Response]


def lv_settings() -> Settings:
    return Settings(
        livevox_base_url=BASE,
        livevox_access_token=TOKEN,  # type: ignore[arg-type]  # pydantic coerces str -> SecretStr
        livevox_password=PASSWORD,  # type: ignore[arg-type]
        livevox_client_name="ACME",
        livevox_username="feeder",
        livevox_connect_timeout_s=1.5,
        livevox_read_timeout_s=7.0,
    )


class FakeLiveVox:
    """Answers login itself (scripted session ids); everything else goes to ``on_call``."""

    def __init__(self, on_call: Handler, sessions: tuple[str, ...] = (SESSION,)) -> None:
        self.on_call = on_call
        self.sessions = list(sessions)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == LOGIN_PATH:
            session = self.sessions.pop(0) if len(self.sessions) > 1 else self.sessions[0]
            return httpx.Response(200, json={"sessionId": session, "userId": 1, "clientId": 2})
        return self.on_call(request)

    def to(self, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == path]

    def client(self) -> LiveVoxClient:
        return LiveVoxClient(lv_settings(), transport=httpx.MockTransport(self))


def ok(_: httpx.Request) -> httpx.Response:
    return httpx.Response(204)


def answering(answer: httpx.Response | Exception) -> Handler:
    """A handler that answers every request with ``answer``, or raises it."""

    def handler(_: httpx.Request) -> httpx.Response:
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler


def campaign_json(ident: int) -> dict[str, object]:
    return {"id": ident, "name": f"c{ident}", "typeId": 1, "serviceId": 123, "status": "PLAYING"}


def search_page(ids: list[int], next_uri: str | None) -> httpx.Response:
    return httpx.Response(200, json={"next": next_uri, "campaign": [campaign_json(i) for i in ids]})


def transaction_page(start: int, count: int, next_uri: str | None) -> httpx.Response:
    items = [
        {"accountTransactionId": n, "account": f"A-{n}", "phone": [{"phone": PHONE}]}
        for n in range(start, start + count)
    ]
    return httpx.Response(200, json={"next": next_uri, "transaction": items})
