"""One typed Settings object, read from ``APPENDQ_*`` environment variables.

Built once per entry point (CLI command, Celery process, HTTP app) and passed down; nothing here
runs at import time. Defaults run against local Redis, local PostgreSQL and the built-in simulator.
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

log = logging.getLogger(__name__)

#: LiveVox's hard limits (seed document): records per Append call, calls per rolling minute.
LIVEVOX_BATCH_LIMIT = 10_000
LIVEVOX_CALLS_PER_MINUTE = 5
LIVEVOX_WINDOW_S = 60.0

SIMULATOR_URL = "http://127.0.0.1:8765"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="APPENDQ_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Prefix of every appendq Redis key (tests give each run its own).
    redis_prefix: str = "appendq"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/appendq"

    livevox_base_url: str = SIMULATOR_URL
    livevox_access_token: SecretStr = SecretStr("simulator-token")
    livevox_client_name: str = "SIMCLIENT"
    livevox_username: str = "appendq"
    livevox_password: SecretStr = SecretStr("simulator-password")
    livevox_api_version: str = "v6.0"
    livevox_connect_timeout_s: float = 5.0
    livevox_read_timeout_s: float = 60.0
    #: Added to connect + read timeouts to make the call deadline: a batch still ``sending`` past
    #: it belonged to a process that died mid-call; an in_doubt batch is reconciled only past it.
    call_grace_s: float = 5.0

    timezone: str = "America/New_York"
    drain_interval_s: float = 20.0
    batch_max: int = LIVEVOX_BATCH_LIMIT
    rate_max_calls: int = LIVEVOX_CALLS_PER_MINUTE
    rate_window_s: float = LIVEVOX_WINDOW_S
    #: Added to the window when counting our own calls, so that network jitter cannot make LiveVox
    #: see more than rate_max_calls in its own window.
    rate_margin_s: float = 1.0
    campaign_cache_s: float = 60.0
    #: A campaign that refused an append (409/404) is skipped this long, then tried again: a 409
    #: may also mean something passing (LiveVox's rate limit answer is undocumented).
    campaign_refusal_s: float = 900.0
    default_region: str = "US"

    retry_max_attempts: int = 8
    retry_base_s: float = 20.0
    retry_cap_s: float = 900.0

    #: Where Celery beat keeps its schedule file.
    state_dir: str = ".appendq"
    log_level: str = "INFO"
    log_json: bool = False

    #: Skip a record already accepted for the same target today: on phone1, on account, or off.
    dedupe: Literal["phone1", "account", "off"] = "phone1"
    #: After a 403 (the LiveVox user may not append) or a refused login: no Append call for this
    #: long, then one probe. An operator can lift it sooner with ``appendq resume``.
    halt_s: float = 600.0

    #: Bearer tokens accepted by the HTTP intake (comma-separated in the environment).
    api_tokens: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    #: Past this many queued records (all targets), the intake answers 503 with Retry-After.
    intake_max_depth: int = 2_000_000
    intake_max_body_bytes: int = 16 * 1024 * 1024
    #: Audit rows older than this are dropped by ``appendq prune`` (0 keeps everything).
    retention_days: int = 90

    @field_validator("database_url")
    @classmethod
    def _psycopg_driver(cls, value: str) -> str:
        """Accept ``postgresql://user@host/db`` as users write it; use psycopg 3 underneath."""
        for plain in ("postgresql://", "postgres://"):
            if value.startswith(plain):
                return "postgresql+psycopg://" + value[len(plain) :]
        return value

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        if isinstance(value, str):
            return [t.strip() for t in value.split(",") if t.strip()]
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _livevox_limits(self) -> Settings:
        if not 1 <= self.batch_max <= LIVEVOX_BATCH_LIMIT:
            raise ValueError(
                f"APPENDQ_BATCH_MAX={self.batch_max}: LiveVox takes 1..{LIVEVOX_BATCH_LIMIT} "
                "records per Append call"
            )
        if not 1 <= self.rate_max_calls <= LIVEVOX_CALLS_PER_MINUTE:
            raise ValueError(
                f"APPENDQ_RATE_MAX_CALLS={self.rate_max_calls}: LiveVox allows at most "
                f"{LIVEVOX_CALLS_PER_MINUTE} Append calls per rolling minute"
            )
        if self.rate_window_s <= 0 or self.drain_interval_s <= 0:
            raise ValueError("APPENDQ_RATE_WINDOW_S and APPENDQ_DRAIN_INTERVAL_S must be positive")
        if self.rate_margin_s < 0:
            raise ValueError("APPENDQ_RATE_MARGIN_S must not be negative")
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def uses_simulator(self) -> bool:
        return self.livevox_base_url.rstrip("/") == SIMULATOR_URL

    def warn_if_unsafe(self) -> None:
        """Say loudly at start when the rate window is shorter than LiveVox's real one."""
        if self.rate_window_s < LIVEVOX_WINDOW_S:
            log.warning(
                "APPENDQ_RATE_WINDOW_S=%s is shorter than LiveVox's %s s rolling window: "
                "only for tests and the simulator, never against a real LiveVox",
                self.rate_window_s,
                LIVEVOX_WINDOW_S,
            )
