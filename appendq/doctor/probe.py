"""The doctor's read-only probe of the configured LiveVox: login (both path forms), session
validate, Find Matching Campaigns over today for each service, one campaign's details, one page
of its transactionList. It never appends, and never logs out (LiveVox hands every login of a user
the same session: a logout would end the running workers' session too).

Raw ``httpx`` calls, not :class:`appendq.livevox.client.LiveVoxClient`: the doctor needs the
answers' raw shapes, status codes and Date header, which the client (rightly) hides.
"""

from __future__ import annotations

import ipaddress
import ssl
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from datetime import time as dtime
from typing import Any
from urllib.parse import urlsplit

import httpx

from appendq.doctor import shapes
from appendq.doctor.report import DoctorReport, Mark
from appendq.livevox.wire import api_path, login_body
from appendq.settings import Settings

#: Campaigns per search page (LiveVox's seed advises 10) and the pages followed at most.
SEARCH_PAGE = 10
MAX_PAGES = 20
TRANSACTION_PAGE = 50
CLOCK_TOLERANCE_S = 5.0
DEFAULT_VERSION = "v6.0"


def safe_url(url: str) -> str:
    """The base URL without user info, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path.rstrip('/')}"


def _local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def error_message(response: httpx.Response) -> str:
    """LiveVox's error message (``{"code", "message"}``), shortened; scrubbed on output."""
    try:
        body = response.json()
    except ValueError:
        body = None
    text = body.get("message") if isinstance(body, dict) else None
    return str(text or response.reason_phrase or "no message")[:200]


def json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


class Probe:
    """One probe run; each step adds its checks to ``report``."""

    def __init__(self, settings: Settings, http: httpx.Client, report: DoctorReport) -> None:
        self.settings = settings
        self.http = http
        self.report = report
        self.observed = report.observed
        self.version = settings.livevox_api_version.strip("/")
        self.session: str | None = None

    def path(self, category: str, resource: str) -> str:
        return api_path(self.version, category, resource)

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"LV-Session": self.session or ""}
        return self.http.request(method, path, headers=headers, **kwargs)

    # --- transport and login ----------------------------------------------------------------

    def login(self) -> bool:
        """Log in over the configured path form, then the other one; False if nothing more can
        be probed (unreachable, refused, no login path)."""
        forms = [self.version, "" if self.version else DEFAULT_VERSION]
        answers: dict[str, httpx.Response] = {}
        for form in forms:
            try:
                answers[form] = self._login(form)
            except httpx.TransportError as exc:
                if not answers:
                    self._unreachable(exc)
                    return False
                continue
            if answers[form].status_code in (401, 403):
                self._denied(answers[form])
                return False
        self._transport_ok(answers[forms[0]])
        return self._chose_form(forms, answers)

    def _login(self, form: str) -> httpx.Response:
        body = login_body(self.settings)
        headers = {"LV-Access": self.settings.livevox_access_token.get_secret_value()}
        sent = time.time()
        response = self.http.post(api_path(form, "session", "login"), json=body, headers=headers)
        if response.status_code == 200 and self.observed.clock_offset_s is None:
            offset = shapes.clock_offset_s(response.headers.get("Date"), sent, time.time())
            self.observed.clock_offset_s = offset
        return response

    def _unreachable(self, exc: httpx.TransportError) -> None:
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, ssl.SSLError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            summary = f"TLS failed, certificate not verified ({type(cause).__name__})"
        else:
            summary = f"cannot reach LiveVox ({type(exc).__name__})"
        self.report.add("base URL", Mark.FAIL, f"{self.report.base_url}: {summary}")

    def _transport_ok(self, response: httpx.Response) -> None:
        url = urlsplit(self.settings.livevox_base_url)
        if url.scheme == "https":
            version = _tls_version(response)
            self.observed.tls_version = version
            detail = f" ({version})" if version else ""
            self.report.add("base URL", Mark.OK, f"https, certificate verified{detail}")
        elif _local(url.hostname or ""):
            self.report.add(
                "base URL",
                Mark.UNKNOWN,
                "plain http to a local address (the simulator?): a real LiveVox is https",
            )
        else:
            self.report.add(
                "base URL",
                Mark.FAIL,
                "plain http: the password and session would cross the network in clear "
                "(LiveVox is https://api.livevox.com, or api.na4/na5/na6.livevox.com)",
            )

    def _denied(self, response: httpx.Response) -> None:
        s = self.settings
        self.report.login_denied = True
        self.report.add(
            "login",
            Mark.FAIL,
            f"LiveVox refused the login ({response.status_code}: {error_message(response)}) for "
            f"client {s.livevox_client_name!r} user {s.livevox_username!r} at "
            f"{self.report.base_url}: check APPENDQ_LIVEVOX_ACCESS_TOKEN, _CLIENT_NAME, _USERNAME "
            "and _PASSWORD (user names are case-sensitive)",
            status=response.status_code,
        )

    def _chose_form(self, forms: list[str], answers: Mapping[str, httpx.Response]) -> bool:
        works = {f: a.status_code == 200 for f, a in answers.items()}
        known = {f: a.status_code in (200, 404) for f, a in answers.items()}
        versioned, plain = (forms[0], forms[1]) if forms[0] else (forms[1], forms[0])
        self.observed.versioned_paths = works.get(versioned) if known.get(versioned) else None
        self.observed.unversioned_paths = works.get(plain) if known.get(plain) else None
        self.observed.api_version = versioned
        chosen = next((f for f in forms if works.get(f)), None)
        self._version_check(forms, answers, chosen)
        if chosen is None:
            first = answers[forms[0]]
            summary = f"login answered {first.status_code}: {error_message(first)}"
            self.report.add("login", Mark.FAIL, summary, status=first.status_code)
            return False
        self.version = chosen
        return self._session_from(answers[chosen])

    def _version_check(
        self, forms: list[str], answers: Mapping[str, httpx.Response], chosen: str | None
    ) -> None:
        said = ", ".join(
            f"{api_path(f, 'session', 'login')} {a.status_code}" for f, a in answers.items()
        )
        configured = self.settings.livevox_api_version
        if chosen == forms[0]:
            self.report.add("API version", Mark.OK, f"{said}; using {configured or 'no version'}")
        elif chosen is not None:
            hint = chosen or '""'
            self.report.add(
                "API version",
                Mark.FAIL,
                f"{said}: the configured form does not answer; set "
                f"APPENDQ_LIVEVOX_API_VERSION={hint}",
            )

    def _session_from(self, response: httpx.Response) -> bool:
        body = json_body(response)
        session = body.get("sessionId") if isinstance(body, dict) else None
        self.observed.login_keys = shapes.key_names([body]) if isinstance(body, dict) else []
        if not isinstance(session, str) or not session:
            self.observed.shape_problems.append("login answer has no sessionId")
            self.report.add("login", Mark.FAIL, "login answered 200 without a sessionId")
            return False
        self.session = session
        self.report.secrets.append(session)
        s = self.settings
        self.report.add(
            "login",
            Mark.OK,
            f"session opened for client {s.livevox_client_name!r} user {s.livevox_username!r}",
        )
        return True

    # --- session, clock, role ---------------------------------------------------------------

    def validate(self) -> None:
        response = self.call("GET", self.path("session", f"validate/{self.session}"))
        if response.is_success:
            self.report.add("session", Mark.OK, f"validate answered {response.status_code}")
        elif response.status_code == 404:
            self.report.add("session", Mark.FAIL, "validate answered 404: the new session is void")
        else:
            self.report.add(
                "session", Mark.UNKNOWN, f"validate answered {response.status_code}: unexpected"
            )

    def clock(self) -> None:
        offset = self.observed.clock_offset_s
        if offset is None:
            self.report.add("clock", Mark.UNKNOWN, "no Date header: offset to LiveVox unknown")
            return
        mark = Mark.OK if abs(offset) <= CLOCK_TOLERANCE_S else Mark.FAIL
        shown = round(offset) or 0  # no "-0"
        summary = f"LiveVox's clock is {shown:+d} s from ours (Date header, ±1 s)"
        if mark is Mark.FAIL:
            summary += ": fix NTP here; 'today' and the rate window depend on it"
        self.report.add("clock", mark, summary, offset_s=offset)

    def role(self, details_status: int | None) -> None:
        if details_status == 403:
            self.report.add(
                "role",
                Mark.FAIL,
                "campaign details refused (403): an agent session or a user without campaign "
                "rights; Append needs role Sysadmin, Superuser or Manager",
            )
            return
        self.report.add(
            "role",
            Mark.UNKNOWN,
            "cannot be proven without an Append (the doctor never appends): Append needs role "
            "Sysadmin, Superuser or Manager; check the user in the LiveVox portal's user admin. "
            "A wrong role shows as a 403 on the first Append, and appendq then halts loudly",
        )

    # --- campaigns --------------------------------------------------------------------------

    def day_range_ms(self) -> dict[str, int]:
        tz = self.settings.tz
        start = datetime.combine(datetime.now(tz).date(), dtime(0), tz)
        end = start + timedelta(days=1) - timedelta(milliseconds=1)
        return {"from": int(start.timestamp() * 1000), "to": int(end.timestamp() * 1000)}

    def search_pages(self, service: int | None) -> Iterator[httpx.Response]:
        """Each answer of one search, paging on while ``next`` is not empty (bounded)."""
        body: dict[str, Any] = {"dateRange": self.day_range_ms()}
        if service is not None:
            body["service"] = {"service": [{"id": service}]}
        path = self.path("campaign", "campaigns/search")
        for page in range(MAX_PAGES):
            params = {"count": SEARCH_PAGE, "offset": page * SEARCH_PAGE}
            response = self.call("POST", path, params=params, json=body)
            yield response
            answer = json_body(response)
            if not response.is_success or not isinstance(answer, dict) or not answer.get("next"):
                return
            self.observed.next_followed += 1

    def details(self, campaign_id: int) -> int:
        response = self.call("GET", self.path("campaign", f"campaigns/{campaign_id}"))
        body = json_body(response)
        if response.status_code != 200 or not isinstance(body, dict):
            self._refused("campaign details", campaign_id, response)
            return response.status_code
        self.observed.details_keys = shapes.key_names([body])
        missing = shapes.missing_keys(body, shapes.DETAILS_KEYS)
        if missing:
            self.observed.shape_problems.append(f"campaign details lack {', '.join(missing)}")
        word = shapes.status_of(body)
        self.observed.details_status = word
        mark = Mark.FAIL if missing else Mark.OK
        lacks = f"; lacks {', '.join(missing)}" if missing else ""
        self.report.add(
            "campaign details",
            mark,
            f"campaign {campaign_id}: status {word}, typeId {body.get('typeId')}{lacks}",
        )
        return response.status_code

    def _refused(self, name: str, campaign_id: int, response: httpx.Response) -> None:
        said = f"answered {response.status_code}: {error_message(response)}"
        self.report.add(name, Mark.FAIL, f"campaign {campaign_id}: {said}")

    def transactions(self, campaign_id: int) -> Sequence[Any] | None:
        """One page of the campaign's transactionList, or None (the failure is reported)."""
        params = {"count": TRANSACTION_PAGE, "offset": 0}
        path = self.path("campaign", f"campaigns/{campaign_id}/transactionList")
        response = self.call("GET", path, params=params)
        body = json_body(response)
        if response.status_code != 200 or not isinstance(body, dict):
            self._refused("transactionList", campaign_id, response)
            return None
        self.observed.transaction_keys = shapes.key_names([body])
        entries = body.get("transaction")
        if not isinstance(entries, list):
            self.observed.shape_problems.append("transactionList has no 'transaction' array")
            return []
        return entries


def _tls_version(response: httpx.Response) -> str | None:
    stream = response.extensions.get("network_stream")
    try:
        ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
        version = ssl_object.version() if ssl_object is not None else None
    except (AttributeError, KeyError, ValueError):
        return None
    return str(version) if version else None
