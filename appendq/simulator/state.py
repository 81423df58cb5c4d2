"""The simulated LiveVox: sessions, campaigns, appended records, rate windows, call log, faults.

Pure in-memory and thread-safe: every public method takes the one lock. Time comes from an
injectable clock (epoch seconds) plus an offset that ``POST /_admin/clock`` can shift, so tests
move time instead of sleeping. The HTTP layer (:mod:`appendq.simulator.server`) only parses
requests and calls these methods; a refusal is a :class:`SimError`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import date, datetime
from typing import Any

from appendq.simulator import rules
from appendq.simulator.catalog import Catalog
from appendq.simulator.config import ClientSpec, ServiceSpec, SimConfig, Status, parse_config
from appendq.simulator.dialect import Dialect, parse_dialect
from appendq.simulator.faults import Fault, FaultQueue
from appendq.simulator.model import Call, Campaign, Session, SimError, local_day
from appendq.simulator.queries import (
    CampaignFilter,
    campaign_json,
    malformed_campaign,
    service_stats,
    transaction_json,
    visible_transactions,
)
from appendq.simulator.ratewindow import RateWindows
from appendq.simulator.sessions import Sessions

log = logging.getLogger(__name__)

APPEND_ROLES = ("Sysadmin", "Superuser", "Manager")
MAX_PAGE = 1000
CALL_LOG_SIZE = 100_000


class SimulatorState:
    """Everything the simulator knows; see the module docstring."""

    def __init__(self, config: SimConfig | None = None, clock: Callable[[], float] = time.time):
        self._lock = threading.RLock()
        self._clock = clock
        self._offset = 0.0
        self.base = config or SimConfig()
        self._calls: deque[Call] = deque(maxlen=CALL_LOG_SIZE)
        self._faults = FaultQueue()
        self._load(self.base)

    def now(self) -> float:
        return self._clock() + self._offset

    @property
    def clock_offset(self) -> float:
        return self._offset

    def today(self) -> date:
        return datetime.fromtimestamp(self.now(), self.config.tz).date()

    def _load(self, config: SimConfig) -> None:
        self._offset = 0.0
        self._sessions = Sessions(config.session_idle_s)
        self._rate = RateWindows(config.rate_window_s)
        self._calls.clear()
        self._faults.clear()
        self.config = config
        self.dialect = config.dialect
        self._cat = Catalog(config, self.now())

    # --- sessions ---------------------------------------------------------------------------

    def login(self, token: str | None, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise SimError(400, "login body must be a JSON object")
        with self._lock:
            expected = self._token_for(body.get("clientName"))
            if token is None or token != expected:
                raise SimError(401, "invalid LV-Access token")
            names = (body.get("clientName"), body.get("userName"), body.get("password"))
            user = next(
                (u for u in self.config.users if (u.client, u.user, u.password) == names), None
            )
            if user is None:
                raise SimError(401, "invalid client name, user name or password")
            agent = body.get("agent", False)
            if not isinstance(agent, bool):
                raise SimError(400, "agent must be true or false")
            session = self._sessions.open(user, token, agent, self.now())
            return {
                "sessionId": session.id,
                "userId": self._cat.user_ids[(user.client, user.user)],
                "clientId": self._cat.client_ids[user.client],
                "daysUntilPasswordExpires": 90,
            }

    def _token_for(self, client_name: Any) -> str:
        """The LV-Access token a login for ``client_name`` needs: the client's own, if it has
        one, else the configuration's."""
        client = self._cat.clients.get(client_name) if isinstance(client_name, str) else None
        if client is not None and client.access_token is not None:
            return client.access_token
        return self.config.access_token

    def known_client(self, name: Any) -> str | None:
        """``name`` if it names a configured client (a login's clientName), else None."""
        with self._lock:
            return name if isinstance(name, str) and name in self._cat.clients else None

    def session_client(self, session_id: str | None) -> str | None:
        """The client of a live session, or None; restarts no idle timer, raises nothing."""
        with self._lock:
            return self._sessions.client_of(session_id, self.now())

    def validate(self, session_id: str) -> bool:
        with self._lock:
            try:
                self._session(session_id)
            except SimError:
                return False
            return True

    def logout(self, session_id: str) -> bool:
        with self._lock:
            return self._sessions.close(session_id, self.now())

    def expire_sessions(self) -> int:
        with self._lock:
            return self._sessions.clear()

    def _session(self, session_id: str | None) -> Session:
        return self._sessions.use(session_id, self.now())

    def _campaign_for(self, session: Session, campaign_id: int) -> Campaign:
        campaign = self._cat.campaigns.get(campaign_id)
        if campaign is None or self._cat.services[campaign.service_id].client != session.client:
            raise SimError(404, f"campaign {campaign_id} not found")
        return campaign

    def _not_agent(self, session: Session) -> None:
        if session.agent:
            raise SimError(403, "agent sessions may only search campaigns")

    # --- campaigns --------------------------------------------------------------------------

    def search(
        self, session_id: str | None, body: Any, count: int, offset: int
    ) -> tuple[list[dict[str, Any]], bool]:
        _check_page(count, offset)
        with self._lock:
            session = self._session(session_id)
            self._advance()
            matcher = CampaignFilter.parse(body, self.config.tz).in_dialect(self.dialect)
            found = [
                campaign_json(c, self.dialect)
                for c in sorted(self._cat.campaigns.values(), key=lambda c: c.id)
                if self._cat.services[c.service_id].client == session.client and matcher.matches(c)
            ]
            page = found[offset : offset + count]
            if self.dialect.malformed_campaign:
                page.append(malformed_campaign(offset // count))
            return page, offset + count < len(found)

    def campaign(self, session_id: str | None, campaign_id: int) -> dict[str, Any]:
        with self._lock:
            session = self._session(session_id)
            self._not_agent(session)
            self._advance()
            return campaign_json(self._campaign_for(session, campaign_id), self.dialect, True)

    def append(self, session_id: str | None, campaign_id: int, body: Any) -> int:
        """Apply an Append call; return the number of records stored."""
        with self._lock:
            now = self.now()
            self._take_rate_slot(self._sessions.client_of(session_id, now), now)
            session = self._session(session_id)
            self._not_agent(session)
            if session.role not in APPEND_ROLES:
                raise SimError(
                    403,
                    f"role {session.role} may not append records (only {', '.join(APPEND_ROLES)})",
                )
            campaign = self._campaign_for(session, campaign_id)
            records = rules.batch_records(body)
            self._advance()
            why = rules.refusal(
                campaign,
                upload_day=local_day(campaign.upload_ms, self.config.tz),
                today=self.today(),
                client=self._client_of(campaign),
            )
            if why:
                raise SimError(self.dialect.refusal_status, why)
            if self.dialect.unknown_fields == "drop":
                records = rules.drop_unknown(records)
            rules.check_records(records, self.config.poison_phones, self.dialect)
            for record in records:
                self._cat.next_txn += 1
                campaign.appended.append(
                    {**record, "accountTransactionId": self._cat.next_txn, "receivedAt": now}
                )
            log.debug("campaign %s: %d records appended", campaign_id, len(records))
            return len(records)

    def count_append(self, client: str | None) -> None:
        """A faulted append that is not processed still takes its slot of its client's rate
        window."""
        with self._lock:
            self._rate.add(client, self.now())

    def _take_rate_slot(self, client: str | None, now: float) -> None:
        calls = self._rate.add(client, now)
        if calls > self.config.rate_max_calls:
            raise SimError(
                self.dialect.rate_limit_status,
                f"rate limit: {calls} Append calls in the last "
                f"{self.config.rate_window_s:g} s, at most {self.config.rate_max_calls} allowed",
            )

    def _client_of(self, campaign: Campaign) -> ClientSpec:
        return self._cat.clients[self._cat.services[campaign.service_id].client]

    def transactions(
        self, session_id: str | None, campaign_id: int, count: int, offset: int
    ) -> tuple[list[dict[str, Any]], bool]:
        _check_page(count, offset)
        with self._lock:
            session = self._session(session_id)
            self._not_agent(session)
            campaign = self._campaign_for(session, campaign_id)
            shown = visible_transactions(campaign, self.dialect, self.now())
            page = [
                transaction_json(campaign, i, self.dialect) for i in shown[offset : offset + count]
            ]
            return page, offset + count < len(shown)

    def stats(self, session_id: str | None) -> dict[str, Any]:
        with self._lock:
            session = self._session(session_id)
            self._advance()
            campaigns = list(self._cat.campaigns.values())
            stats = [
                service_stats(service, [c for c in campaigns if c.service_id == service.id])
                for service in self._cat.services.values()
                if service.client == session.client
            ]
            return {"stats": stats}

    def _advance(self) -> None:
        """Dial every PLAYING campaign up to now; a drained one reports (DONE) if its service
        does not wait for the end of the day (seed: Append Campaigns Report at End of Day)."""
        now = self.now()
        for campaign in self._cat.campaigns.values():
            drained = campaign.advance(now, self.config.dial_per_s)
            if drained and not self._cat.services[campaign.service_id].report_at_end_of_day:
                campaign.status = Status.DONE
                log.info("campaign %s ran out of dialable records: DONE", campaign.id)

    # --- admin ------------------------------------------------------------------------------

    def reset(self, data: Mapping[str, Any]) -> None:
        config = parse_config(data, base=self.base)
        with self._lock:
            self._load(config)

    def get_dialect(self) -> Dialect:
        with self._lock:
            return self.dialect

    def set_dialect(self, data: Any) -> Dialect:
        """Merge ``data`` (fields, optionally a ``preset``) over the current dialect; a reset
        goes back to the configured one."""
        with self._lock:
            self.dialect = parse_dialect(data, self.dialect)
            log.info("simulator dialect: %s", self.dialect.as_json())
            return self.dialect

    def set_clock(self, offset_s: float | None = None, advance_s: float | None = None) -> float:
        with self._lock:
            self._advance()
            if offset_s is not None:
                self._offset = offset_s
            if advance_s is not None:
                self._offset += advance_s
            self._advance()
            return self._offset

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            self._advance()
            now = self.now()
            in_window = self._rate.counts(now)
            return {
                "now": now,
                "clock_offset_s": self._offset,
                "today": self.today().isoformat(),
                "settings": self._cat.settings_json(),
                "dialect": self.dialect.as_json(),
                "clients": [asdict(c) for c in self._cat.clients.values()],
                "services": [asdict(s) for s in self._cat.services.values()],
                "campaigns": [
                    self._cat.admin_view(c)
                    for c in sorted(self._cat.campaigns.values(), key=lambda c: c.id)
                ],
                "sessions": self._sessions.live(now),
                "rate_window_calls": sum(in_window.values()),
                "rate_window_calls_by_client": {
                    name: in_window.get(name, 0) for name in self._cat.clients
                },
                "faults": self._faults.pending(),
            }

    def add_campaign(self, data: Any) -> dict[str, Any]:
        with self._lock:
            campaign = self._cat.create_campaign(data, self.now())
            return self._cat.admin_view(campaign)

    def patch_campaign(self, campaign_id: int, data: Any) -> dict[str, Any]:
        with self._lock:
            self._advance()
            campaign = self._cat.update_campaign(campaign_id, data, self.now())
            self._advance()
            return self._cat.admin_view(campaign)

    def patch_client(self, name: str, data: Any) -> ClientSpec:
        with self._lock:
            return self._cat.patch_client(name, data)

    def patch_service(self, service_id: int, data: Any) -> ServiceSpec:
        with self._lock:
            self._advance()
            return self._cat.patch_service(service_id, data)

    def records(self, campaign_id: int) -> list[dict[str, Any]]:
        with self._lock:
            campaign = self._cat.campaigns.get(campaign_id)
            if campaign is None:
                raise SimError(404, f"campaign {campaign_id} not found")
            return [dict(r) for r in campaign.appended]

    def start_call(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def finish_call(self, call: Call, status: int | None) -> None:
        with self._lock:
            call.status = status

    def calls(self) -> list[dict[str, Any]]:
        with self._lock:
            return [c.as_json() for c in self._calls]

    def clear_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def push_fault(self, kind: str, fault: Fault, times: int, client: str | None = None) -> None:
        """Queue a fault for ``times`` calls of ``kind``; with ``client``, for its calls only."""
        with self._lock:
            if client is not None and client not in self._cat.clients:
                raise ValueError(f"unknown client {client!r}")
            self._faults.push(kind, fault, times, client)

    def take_fault(self, kind: str, client: str | None = None) -> Fault | None:
        with self._lock:
            return self._faults.take(kind, client)

    def pending_faults(self) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            return self._faults.pending()

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()


def _check_page(count: int, offset: int) -> None:
    if not 1 <= count <= MAX_PAGE:
        raise SimError(400, f"count must be between 1 and {MAX_PAGE}")
    if offset < 0:
        raise SimError(400, "offset must not be negative")
