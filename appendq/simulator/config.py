"""The simulator's configuration: clients, users, services, campaigns and LiveVox's limits.

One JSON shape serves the ``--config`` file and ``POST /_admin/reset``; every key is optional.
Missing entity lists (clients, users, services, campaigns) fall back to the default seed; missing
scalar settings fall back to ``base`` (the settings the simulator was started with)::

    {"access_token": "simulator-token",
     "clients":  [{"name": "SIMCLIENT", "appends_allowed": true, "access_token": null}],
     "users":    [{"client": "SIMCLIENT", "user": "appendq", "password": "...", "role": "Manager"}],
     "services": [{"id": 1001, "name": "Sales", "report_at_end_of_day": true,
                   "client": "SIMCLIENT"}],
     "campaigns": [{"id": 5001, "serviceId": 1001, "name": "...", "typeId": 1, "status": "PLAYING",
                    "allowAppend": true, "requeue": false, "day": "today", "initialRecords": 0,
                    "initialInvalid": 0}],
     "rate_max_calls": 5, "rate_window_s": 60, "session_idle_s": 7200, "dial_per_s": 0.5,
     "poison_phones": [], "timezone": "America/New_York",
     "dialect": {"phone_key": "phone", ...}}

``dialect`` (see :mod:`appendq.simulator.dialect`) is merged over the dialect of ``base``.

Each client is a LiveVox account of its own: it sees only its services' campaigns, and
``rate_max_calls`` per ``rate_window_s`` apply to each client separately. A client's
``access_token``, when set, is the LV-Access token its logins need instead of the global one.
:func:`seeded_clients` builds the mapping for several clients at once (``--clients``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from appendq.simulator.dialect import DEFAULT as DEFAULT_DIALECT
from appendq.simulator.dialect import Dialect, parse_dialect

DEFAULT_CLIENT = "SIMCLIENT"
DEFAULT_TOKEN = "simulator-token"
#: The seeded users' password (appendq.settings.SIMULATOR_PASSWORD, the settings' default).
DEFAULT_PASSWORD = "simulator-password"
DEFAULT_USER = "appendq"
_DAY = re.compile(r"^(today|yesterday|tomorrow|\d{4}-\d{2}-\d{2})$")
_T = TypeVar("_T")


class Status(StrEnum):
    """Campaign states as LiveVox's search answers them."""

    LOADING = "LOADING"
    SCHEDULED_UNBUILT = "SCHEDULED_UNBUILT"
    READY_UNBUILT = "READY_UNBUILT"
    SCHEDULED = "SCHEDULED"
    READY = "READY"
    PLAYING = "PLAYING"
    PAUSED = "PAUSED"
    STOPPED = "STOPPED"
    DONE = "DONE"
    REPORTED = "REPORTED"


@dataclass(frozen=True)
class ClientSpec:
    name: str
    appends_allowed: bool = True
    #: The LV-Access token this client's logins need; None: the configuration's access_token.
    access_token: str | None = None


@dataclass(frozen=True)
class UserSpec:
    client: str
    user: str
    password: str
    role: str = "Manager"


@dataclass(frozen=True)
class ServiceSpec:
    id: int
    name: str
    report_at_end_of_day: bool = True
    client: str = DEFAULT_CLIENT


@dataclass(frozen=True)
class CampaignSpec:
    id: int | None
    service_id: int | None = None
    name: str = ""
    type_id: int = 1
    status: Status = Status.PLAYING
    allow_append: bool = True
    requeue: bool = False
    day: str = "today"
    initial_records: int = 0
    initial_invalid: int = 0


#: JSON key of each CampaignSpec field (LiveVox spelling).
CAMPAIGN_KEYS = {
    "id": "id",
    "serviceId": "service_id",
    "name": "name",
    "typeId": "type_id",
    "status": "status",
    "allowAppend": "allow_append",
    "requeue": "requeue",
    "day": "day",
    "initialRecords": "initial_records",
    "initialInvalid": "initial_invalid",
}

_SEED_CLIENTS = (ClientSpec(DEFAULT_CLIENT),)
_SEED_USERS = (UserSpec(DEFAULT_CLIENT, DEFAULT_USER, DEFAULT_PASSWORD),)
_SEED_SERVICES = (ServiceSpec(1001, "Sales"),)
_SEED_CAMPAIGNS = (CampaignSpec(5001, 1001, "Sales today"),)


@dataclass(frozen=True)
class SimConfig:
    access_token: str = DEFAULT_TOKEN
    clients: tuple[ClientSpec, ...] = _SEED_CLIENTS
    users: tuple[UserSpec, ...] = _SEED_USERS
    services: tuple[ServiceSpec, ...] = _SEED_SERVICES
    campaigns: tuple[CampaignSpec, ...] = _SEED_CAMPAIGNS
    rate_max_calls: int = 5
    rate_window_s: float = 60.0
    session_idle_s: float = 7200.0
    dial_per_s: float = 0.5
    poison_phones: tuple[str, ...] = field(default=())
    timezone: str = "America/New_York"
    dialect: Dialect = DEFAULT_DIALECT

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def with_overrides(self, **values: Any) -> SimConfig:
        """A copy with the non-None values replaced (command-line options over the file)."""
        config = replace(self, **{k: v for k, v in values.items() if v is not None})
        _check(config)
        return config


def seeded_clients(names: Sequence[str]) -> dict[str, Any]:
    """A configuration mapping (the ``POST /_admin/reset`` shape) with one LiveVox account per
    name, each seeded as the default seed is: the k-th (0-based) gets user ``appendq``, service
    1001+100k named "Sales <name>" and campaign 5001+100k on it (PLAYING, Allow Append, today's).
    The default client keeps the default seed's names ("Sales"), so ``["SIMCLIENT"]`` gives
    exactly the default seed."""
    if not names or any(not isinstance(n, str) or not n.strip() for n in names):
        raise ValueError("client names must be a non-empty list of non-empty names")
    if len(set(names)) != len(names):
        raise ValueError("client names must be unique")
    clients: list[dict[str, Any]] = []
    users: list[dict[str, Any]] = []
    services: list[dict[str, Any]] = []
    campaigns: list[dict[str, Any]] = []
    for k, name in enumerate(names):
        service = "Sales" if name == DEFAULT_CLIENT else f"Sales {name}"
        clients.append({"name": name})
        users.append({"client": name, "user": DEFAULT_USER, "password": DEFAULT_PASSWORD})
        services.append({"id": 1001 + 100 * k, "name": service, "client": name})
        campaigns.append(
            {
                "id": 5001 + 100 * k,
                "serviceId": 1001 + 100 * k,
                "name": f"{service} today",
                "typeId": 1,
                "status": Status.PLAYING.value,
                "allowAppend": True,
                "day": "today",
            }
        )
    return {"clients": clients, "users": users, "services": services, "campaigns": campaigns}


def load_config_file(path: str | Path) -> dict[str, Any]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the configuration must be a JSON object")
    return data


def parse_config(data: Mapping[str, Any], base: SimConfig | None = None) -> SimConfig:
    """Validate a configuration mapping; raise ValueError naming the bad key."""
    base = base or SimConfig()
    unknown = set(data) - {f.name for f in fields(SimConfig)}
    if unknown:
        raise ValueError(f"unknown configuration keys: {', '.join(sorted(unknown))}")
    clients = tuple(_parse_client(c) for c in _list(data, "clients", _SEED_CLIENTS))
    first_client = clients[0].name if clients else DEFAULT_CLIENT
    config = SimConfig(
        access_token=_get(data, "access_token", str, base.access_token),
        clients=clients,
        users=tuple(_parse_user(u) for u in _list(data, "users", _SEED_USERS)),
        services=tuple(
            _parse_service(s, first_client) for s in _list(data, "services", _SEED_SERVICES)
        ),
        campaigns=tuple(parse_campaign(c) for c in _list(data, "campaigns", _SEED_CAMPAIGNS)),
        rate_max_calls=_get(data, "rate_max_calls", int, base.rate_max_calls),
        rate_window_s=float(_get(data, "rate_window_s", float, base.rate_window_s)),
        session_idle_s=float(_get(data, "session_idle_s", float, base.session_idle_s)),
        dial_per_s=float(_get(data, "dial_per_s", float, base.dial_per_s)),
        poison_phones=tuple(
            str(p) for p in _get(data, "poison_phones", list, [*base.poison_phones])
        ),
        timezone=_get(data, "timezone", str, base.timezone),
        dialect=parse_dialect(data.get("dialect"), base.dialect),
    )
    _check(config)
    return config


def _check(config: SimConfig) -> None:
    if config.rate_max_calls < 1 or config.rate_window_s <= 0:
        raise ValueError("rate_max_calls must be >= 1 and rate_window_s > 0")
    if config.session_idle_s <= 0 or config.dial_per_s < 0:
        raise ValueError("session_idle_s must be > 0 and dial_per_s >= 0")
    try:
        ZoneInfo(config.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {config.timezone!r}") from exc
    client_names = {c.name for c in config.clients}
    if len(client_names) != len(config.clients):
        raise ValueError("client names must be unique")
    for user in config.users:
        if user.client not in client_names:
            raise ValueError(f"user {user.user!r}: unknown client {user.client!r}")
    service_ids = set()
    for service in config.services:
        if service.client not in client_names:
            raise ValueError(f"service {service.id}: unknown client {service.client!r}")
        service_ids.add(service.id)
    campaign_ids = [c.id for c in config.campaigns if c.id is not None]
    if len(campaign_ids) != len(set(campaign_ids)):
        raise ValueError("campaign ids must be unique")
    for campaign in config.campaigns:
        if campaign.service_id is not None and campaign.service_id not in service_ids:
            raise ValueError(f"campaign {campaign.id}: unknown service {campaign.service_id}")


def parse_campaign(data: Any, current: CampaignSpec | None = None) -> CampaignSpec:
    """A CampaignSpec from its JSON form; with ``current``, a patch of it."""
    if isinstance(data, CampaignSpec):
        return data
    if not isinstance(data, Mapping):
        raise ValueError("a campaign must be a JSON object")
    unknown = set(data) - set(CAMPAIGN_KEYS)
    if unknown:
        raise ValueError(f"unknown campaign keys: {', '.join(sorted(unknown))}")
    spec = current or CampaignSpec(id=None)
    types: dict[str, type] = {"name": str, "day": str}
    changes: dict[str, Any] = {}
    for key, attr in CAMPAIGN_KEYS.items():
        if key not in data:
            continue
        if attr == "status":
            changes[attr] = _status(data[key])
        elif attr in ("allow_append", "requeue"):
            changes[attr] = _typed(data[key], bool, key)
        else:
            changes[attr] = _typed(data[key], types.get(attr, int), key)
    spec = replace(spec, **changes)
    if not _DAY.match(spec.day):
        raise ValueError("day must be today, yesterday, tomorrow or YYYY-MM-DD")
    if spec.initial_records < 0 or spec.initial_invalid < 0:
        raise ValueError("initialRecords and initialInvalid must not be negative")
    return spec


def _status(value: Any) -> Status:
    try:
        return Status(str(value).upper())
    except ValueError:
        known = ", ".join(s.value for s in Status)
        raise ValueError(f"status {value!r} is not one of {known}") from None


def _parse_client(data: Any) -> ClientSpec:
    if isinstance(data, ClientSpec):
        return data
    obj = _object(data, "client", {"name", "appends_allowed", "access_token"})
    token = obj.get("access_token")
    if token is not None and (not isinstance(token, str) or not token):
        raise ValueError("a client's access_token must be non-empty text or null")
    return ClientSpec(_req(obj, "name", str), _get(obj, "appends_allowed", bool, True), token)


def _parse_user(data: Any) -> UserSpec:
    if isinstance(data, UserSpec):
        return data
    obj = _object(data, "user", {"client", "user", "password", "role"})
    return UserSpec(
        _get(obj, "client", str, DEFAULT_CLIENT),
        _req(obj, "user", str),
        _req(obj, "password", str),
        _get(obj, "role", str, "Manager"),
    )


def _parse_service(data: Any, default_client: str) -> ServiceSpec:
    if isinstance(data, ServiceSpec):
        return data
    obj = _object(data, "service", {"id", "name", "report_at_end_of_day", "client"})
    ident = _req(obj, "id", int)
    return ServiceSpec(
        ident,
        _get(obj, "name", str, f"Service {ident}"),
        _get(obj, "report_at_end_of_day", bool, True),
        _get(obj, "client", str, default_client),
    )


def _object(data: Any, what: str, keys: set[str]) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError(f"a {what} must be a JSON object")
    unknown = set(data) - keys
    if unknown:
        raise ValueError(f"unknown {what} keys: {', '.join(sorted(unknown))}")
    return data


def _list(data: Mapping[str, Any], key: str, default: Sequence[Any]) -> Sequence[Any]:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, list | tuple):
        raise ValueError(f"{key} must be a list")
    return value


def _req(data: Mapping[str, Any], key: str, kind: type[_T]) -> _T:
    if key not in data:
        raise ValueError(f"{key} is required")
    return _typed(data[key], kind, key)


def _get(data: Mapping[str, Any], key: str, kind: type[_T], default: _T) -> _T:
    value = data.get(key)
    return default if value is None else _typed(value, kind, key)


def _typed(value: Any, kind: type[_T], key: str) -> _T:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) and kind is not bool:
        raise ValueError(f"{key} must be {kind.__name__}, not a boolean")
    if not isinstance(value, kind):
        raise ValueError(f"{key} must be {kind.__name__}")
    return value
