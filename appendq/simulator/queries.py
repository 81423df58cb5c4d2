"""Read-side shapes: the Find Matching Campaigns filter and answer, the transactionList entries,
each as the dialect (:mod:`appendq.simulator.dialect`) words them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from zoneinfo import ZoneInfo

from appendq.simulator.config import ServiceSpec, Status
from appendq.simulator.dialect import Dialect
from appendq.simulator.model import Campaign, SimError, parse_epoch_ms

_PERSON = ("firstName", "lastName", "email")
_NOT_EXTRA = {"phone1", "phone2", "account", *_PERSON, "accountTransactionId", "receivedAt"}


@dataclass(frozen=True)
class CampaignFilter:
    """``{"dateRange": {"from", "to"}, "service": {"service": [{"id"}]},
    "type": {"type": [{"id"}]}, "state": [...]}``; dateRange is required."""

    date_from: int
    date_to: int
    services: frozenset[int] | None = None
    types: frozenset[int] | None = None
    states: frozenset[str] | None = None

    @classmethod
    def parse(cls, body: Any, tz: ZoneInfo) -> CampaignFilter:
        if not isinstance(body, dict):
            raise SimError(400, "search body must be a JSON object")
        date_range = body.get("dateRange")
        if not isinstance(date_range, dict) or "from" not in date_range or "to" not in date_range:
            raise SimError(400, 'dateRange {"from": ..., "to": ...} is required')
        states = body.get("state")
        if states is not None and (
            not isinstance(states, list) or not all(isinstance(s, str) for s in states)
        ):
            raise SimError(400, "state must be a list of campaign states")
        return cls(
            date_from=parse_epoch_ms(date_range["from"], tz, "dateRange.from"),
            date_to=parse_epoch_ms(date_range["to"], tz, "dateRange.to"),
            services=_ids(body.get("service"), "service"),
            types=_ids(body.get("type"), "type"),
            states=frozenset(s.upper() for s in states) if states is not None else None,
        )

    def in_dialect(self, dialect: Dialect) -> CampaignFilter:
        """The filter with its state words read as the dialect's (unknown words match nothing)."""
        if self.states is None:
            return self
        internal = (dialect.internal(word) for word in self.states)
        return replace(self, states=frozenset(w for w in internal if w is not None))

    def matches(self, campaign: Campaign) -> bool:
        return (
            self.date_from <= campaign.upload_ms <= self.date_to
            and (self.services is None or campaign.service_id in self.services)
            and (self.types is None or campaign.type_id in self.types)
            and (self.states is None or campaign.status.value in self.states)
        )


def _ids(value: Any, key: str) -> frozenset[int] | None:
    """``{"service": [{"id": 1}]}`` as LiveVox spells it; plain lists of ids are accepted too."""
    if value is None:
        return None
    items = value.get(key) if isinstance(value, dict) else value
    if not isinstance(items, list):
        raise SimError(400, f'{key} must be {{"{key}": [{{"id": ...}}]}}')
    ids = set()
    for item in items:
        ident = item.get("id") if isinstance(item, dict) else item
        try:
            ids.add(int(str(ident)))
        except ValueError:
            raise SimError(400, f"{key} ids must be integers, not {ident!r}") from None
    return frozenset(ids)


def campaign_json(campaign: Campaign, dialect: Dialect, details: bool = False) -> dict[str, Any]:
    """A search entry (or, with ``details``, the details answer) with the dialect's words."""
    answer = campaign.details() if details else campaign.summary()
    answer["status"] = dialect.word(answer["status"])
    return answer


def malformed_campaign(page: int) -> dict[str, Any]:
    """The malformed entry a ``malformed_campaign`` dialect adds to each search page: its id is
    missing on even pages (0, 2, ...) and not a number on odd ones; type, status, date null."""
    entry: dict[str, Any] = {
        "name": "malformed entry (simulator dialect)",
        "typeId": None,
        "serviceId": None,
        "status": None,
        "uploadDate": None,
    }
    if page % 2:
        entry["id"] = f"X-{page}"
    return entry


def visible_transactions(campaign: Campaign, dialect: Dialect, now: float) -> Sequence[int]:
    """The indexes of a campaign's transactions that transactionList shows: the initial records,
    then the appended ones the dialect lets show by ``now``."""
    after = dialect.visible_after_s()
    if after is None:
        return range(campaign.initial)
    if after <= 0:
        return range(campaign.total)
    shown = [
        campaign.initial + i
        for i, record in enumerate(campaign.appended)
        if record["receivedAt"] + after <= now
    ]
    return [*range(campaign.initial), *shown]


def transaction_json(campaign: Campaign, index: int, dialect: Dialect) -> dict[str, Any]:
    """The ``index``-th account transaction of a campaign: initial records first, then appended;
    its phones under the dialect's key and shape."""
    if index < campaign.initial:
        record: dict[str, Any] = {
            "phone1": f"555{index:07d}",
            "account": f"INIT-{campaign.id}-{index}",
            "accountTransactionId": campaign.first_initial_txn + index,
        }
    else:
        record = campaign.appended[index - campaign.initial]
    phones = [record["phone1"], *(record.get("phone2") or [])]
    return {
        "accountTransactionId": record["accountTransactionId"],
        "account": record.get("account"),
        "serviceId": campaign.service_id,
        "campaignId": campaign.id,
        **dialect.phones_json([str(p) for p in phones]),
        "consumer": {k: record.get(k) for k in _PERSON},
        "extra": {k: v for k, v in record.items() if k not in _NOT_EXTRA},
    }


def service_stats(service: ServiceSpec, campaigns: list[Campaign]) -> dict[str, Any]:
    """One entry of ``POST /realtime/service/stats``: the service's campaigns added up."""
    counts = [(c, c.counts()) for c in campaigns]
    loaded = sum(n.loaded for _, n in counts)
    done = sum(n.completed for _, n in counts)
    return {
        "serviceId": service.id,
        "serviceName": service.name,
        "loaded": loaded,
        "remaining": loaded - done,
        "percentComplete": round(100.0 * done / loaded, 2) if loaded else 0.0,
        "playingDialable": sum(n.remaining for c, n in counts if c.status is Status.PLAYING),
    }
