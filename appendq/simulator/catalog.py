"""The simulator's portal configuration as live objects: clients, services, campaigns, ids.

Built from a :class:`SimConfig` at start and at ``POST /_admin/reset``; changed by the admin
endpoints. Not thread-safe by itself: ``SimulatorState`` (appendq.simulator.state) holds the lock.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from appendq.simulator.config import (
    CampaignSpec,
    ClientSpec,
    ServiceSpec,
    SimConfig,
    parse_campaign,
)
from appendq.simulator.model import Campaign, SimError, local_day, upload_ms_for

FIRST_TXN_ID = 700_000_000


class Catalog:
    def __init__(self, config: SimConfig, now: float) -> None:
        self.config = config
        self.clients = {c.name: c for c in config.clients}
        self.client_ids = {c.name: 1000 + i for i, c in enumerate(config.clients)}
        self.user_ids = {(u.client, u.user): 2000 + i for i, u in enumerate(config.users)}
        self.services = {s.id: s for s in config.services}
        self.campaigns: dict[int, Campaign] = {}
        self.next_txn = FIRST_TXN_ID
        for spec in config.campaigns:
            self.create_campaign(spec, now)

    def create_campaign(self, data: Any, now: float) -> Campaign:
        spec = parse_campaign(data)
        ident = spec.id if spec.id is not None else max(self.campaigns, default=5000) + 1
        if ident in self.campaigns:
            raise SimError(409, f"campaign {ident} already exists")
        service_id = self._service_id(spec.service_id)
        campaign = Campaign(
            id=ident,
            name=spec.name or f"Campaign {ident}",
            service_id=service_id,
            type_id=spec.type_id,
            status=spec.status,
            allow_append=spec.allow_append,
            requeue=spec.requeue,
            upload_ms=upload_ms_for(spec.day, now, self.config.tz),
            initial=spec.initial_records,
            initial_invalid=spec.initial_invalid,
            first_initial_txn=self.next_txn + 1,
            last_tick=now,
        )
        self.next_txn += spec.initial_records
        self.campaigns[ident] = campaign
        return campaign

    def update_campaign(self, campaign_id: int, data: Any, now: float) -> Campaign:
        campaign = self.campaigns.get(campaign_id)
        if campaign is None:
            raise SimError(404, f"campaign {campaign_id} not found")
        if not isinstance(data, dict):
            raise ValueError("a campaign patch must be a JSON object")
        fixed = {"id", "initialRecords", "initialInvalid"} & set(data)
        if fixed:
            raise ValueError(f"cannot change {', '.join(sorted(fixed))} of a campaign")
        spec = parse_campaign(data, current=self._spec_of(campaign))
        campaign.name = spec.name
        campaign.service_id = self._service_id(spec.service_id)
        campaign.type_id = spec.type_id
        campaign.status = spec.status
        campaign.allow_append = spec.allow_append
        campaign.requeue = spec.requeue
        if "day" in data:
            campaign.upload_ms = upload_ms_for(spec.day, now, self.config.tz)
        return campaign

    def _spec_of(self, campaign: Campaign) -> CampaignSpec:
        return CampaignSpec(
            id=campaign.id,
            service_id=campaign.service_id,
            name=campaign.name,
            type_id=campaign.type_id,
            status=campaign.status,
            allow_append=campaign.allow_append,
            requeue=campaign.requeue,
            day=local_day(campaign.upload_ms, self.config.tz).isoformat(),
            initial_records=campaign.initial,
            initial_invalid=campaign.initial_invalid,
        )

    def _service_id(self, service_id: int | None) -> int:
        if service_id is None:
            if not self.services:
                raise ValueError("no service is configured for the campaign")
            return next(iter(self.services))
        if service_id not in self.services:
            raise ValueError(f"unknown service {service_id}")
        return service_id

    def patch_client(self, name: str, data: Any) -> ClientSpec:
        client = self.clients.get(name)
        if client is None:
            raise SimError(404, f"client {name} not found")
        value = data.get("appends_allowed") if isinstance(data, dict) else None
        if not isinstance(value, bool) or set(data) != {"appends_allowed"}:
            raise ValueError('a client patch is {"appends_allowed": true|false}')
        self.clients[name] = replace(client, appends_allowed=value)
        return self.clients[name]

    def patch_service(self, service_id: int, data: Any) -> ServiceSpec:
        service = self.services.get(service_id)
        if service is None:
            raise SimError(404, f"service {service_id} not found")
        if not isinstance(data, dict) or not set(data) <= {"name", "report_at_end_of_day"}:
            raise ValueError('a service patch takes "name" and "report_at_end_of_day"')
        name = data.get("name", service.name)
        report = data.get("report_at_end_of_day", service.report_at_end_of_day)
        if not isinstance(name, str) or not isinstance(report, bool):
            raise ValueError("name must be text and report_at_end_of_day a boolean")
        self.services[service_id] = replace(service, name=name, report_at_end_of_day=report)
        return self.services[service_id]

    def admin_view(self, campaign: Campaign) -> dict[str, Any]:
        """A campaign as ``/_admin`` shows it: every setting, its portal counts, its client."""
        client = self.services[campaign.service_id].client
        return {**campaign.admin_view(self.config.tz), "client": client}

    def settings_json(self) -> dict[str, Any]:
        config = self.config
        return {
            "access_token": config.access_token,
            "rate_max_calls": config.rate_max_calls,
            "rate_window_s": config.rate_window_s,
            "session_idle_s": config.session_idle_s,
            "dial_per_s": config.dial_per_s,
            "poison_phones": list(config.poison_phones),
            "timezone": config.timezone,
        }
