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
from sqlalchemy.exc import ArgumentError

from appendq.crypto import decode_key
from appendq.db.engine import psycopg_url
from appendq.errors import ConfigError
from appendq.http.tokens import ApiToken, parse_tokens

log = logging.getLogger(__name__)

#: LiveVox's hard limits (seed document): records per Append call, calls per rolling minute.
LIVEVOX_BATCH_LIMIT = 10_000
LIVEVOX_CALLS_PER_MINUTE = 5
LIVEVOX_WINDOW_S = 60.0

SIMULATOR_URL = "http://127.0.0.1:8765"
#: The built-in simulator's credentials: the defaults, and never sent to a real LiveVox.
SIMULATOR_TOKEN = "simulator-token"
SIMULATOR_PASSWORD = "simulator-password"
_LOOPBACK = ("127.", "localhost", "[::1]")


class Settings(BaseSettings):
    #: Inputs are never echoed in errors: a bad value may be a secret (a data key, a URL).
    model_config = SettingsConfigDict(
        env_prefix="APPENDQ_", extra="ignore", hide_input_in_errors=True
    )

    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Prefix of every appendq Redis key (tests give each run its own).
    redis_prefix: str = "appendq"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/appendq"

    #: A TOML file of LiveVox accounts (``appendq.accounts``); unset: one account, ``default``,
    #: made of the APPENDQ_LIVEVOX_* settings below.
    accounts_file: str | None = None
    livevox_base_url: str = SIMULATOR_URL
    livevox_access_token: SecretStr = SecretStr(SIMULATOR_TOKEN)
    livevox_client_name: str = "SIMCLIENT"
    livevox_username: str = "appendq"
    livevox_password: SecretStr = SecretStr(SIMULATOR_PASSWORD)
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
    #: Campaign status words that take appends (comma-separated; compared upper-case), in order
    #: of preference. Public clients disagree on the word for a Built campaign (READY, ACTIVE,
    #: PREBUILT): see the README, "Campaign status words".
    livevox_appendable_states: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["PLAYING", "PAUSED", "READY", "ACTIVE", "PREBUILT"]
    )
    #: Campaign searches allowed per rolling minute for the whole account (Redis's clock); a
    #: target whose search is not in budget keeps its last answer (up to 5 min old) or waits,
    #: with a reason.
    campaign_searches_per_minute: int = 60
    #: A content refusal is isolated in at most this many refused Append calls per batch; past
    #: it the batch is operator_hold, with the evidence.
    isolation_max_calls: int = 40
    #: A 5xx *answer* (500, 503) ends the call: reconcile it after this settle, not after the
    #: whole call deadline (kept for timeouts, dropped connections and 502/504).
    answered_settle_s: float = 5.0

    retry_max_attempts: int = 8
    retry_base_s: float = 20.0
    retry_cap_s: float = 900.0

    #: Where Celery beat keeps its schedule file.
    state_dir: str = ".appendq"
    log_level: str = "INFO"
    log_json: bool = False

    #: Everything against the real account except the Append call: campaigns resolved, batches
    #: built and audited as ``dry_run`` (``appendq worker --dry-run``).
    dry_run: bool = False
    #: Skip a record already accepted for the same target today: on phone1, on account, or off.
    dedupe: Literal["phone1", "account", "off"] = "phone1"
    #: After a 403 (the LiveVox user may not append) or a refused login: no Append call for this
    #: long, then one probe. An operator can lift it sooner with ``appendq resume``.
    halt_s: float = 600.0

    #: The HTTP API's bearer tokens, ``name:role:secret`` comma-separated in the environment (a
    #: bare token: role intake, named token-<N>); see ``appendq.http.tokens``.
    api_tokens: Annotated[list[ApiToken], NoDecode] = Field(default_factory=list)
    #: Mark the console's cookies Secure even when requests reach appendq over plain HTTP (a
    #: proxy in front ends TLS); over HTTPS they always are.
    console_secure_cookie: bool = False
    #: Past this many queued records (all targets), the intake answers 503 with Retry-After.
    intake_max_depth: int = 2_000_000
    intake_max_body_bytes: int = 16 * 1024 * 1024
    #: ``appendq enqueue``: a longer line (or CSV row) is refused, never held in memory whole.
    import_max_line_bytes: int = Field(default=1024 * 1024, ge=1024)
    #: Phone numbers one submission may hold (phone1 + phone2, all records), refused before any
    #: validation. The default is the largest request LiveVox takes (10,000 records x 30
    #: phones): about 1 s of validation on the fast path (``appendq.phones``, ~4 µs a number).
    intake_max_phones: int = Field(default=300_000, ge=1)
    #: CPU seconds one submission may spend in validation (numbers the fast path does not
    #: decide cost ~50 µs each): past it the whole request is refused (413), nothing queued.
    intake_validation_budget_s: float = Field(default=2.0, gt=0)
    #: Distinct targets (service:ID, campaign:ID) that may hold queued records at once; a
    #: submission that would create one more is refused. Existing targets keep working.
    max_targets: int = Field(default=200, ge=1)
    #: Audit rows older than this are dropped by ``appendq prune`` (0 keeps everything).
    retention_days: int = 90
    #: The payloads (personal data) of finished batches are dropped by ``appendq prune`` this
    #: long after the batch finished, even when its metadata is kept longer. Default: as
    #: retention_days; never longer (0 keeps them, only with retention_days 0).
    pii_retention_days: int | None = Field(default=None, ge=0)
    #: Keys of the payload cipher (comma-separated, secrets; ``appendq.crypto``): the first
    #: encrypts, every one decrypts. None: a development key made under state_dir.
    data_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)

    @field_validator("database_url")
    @classmethod
    def _psycopg_driver(cls, value: str) -> str:
        """Accept ``postgresql://user@host/db`` as users write it; use psycopg 3 underneath."""
        try:
            return psycopg_url(value)
        except ArgumentError:
            # Not echoed: a database URL may hold a password.
            raise ValueError("not a database URL (postgresql://user@host:5432/name)") from None

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        """Entries read (``appendq.http.tokens``); a malformed one, or a name or a secret given
        twice, is an error naming the entries, never a secret."""
        return parse_tokens(value)

    @field_validator("data_keys", mode="before")
    @classmethod
    def _split_data_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("data_keys")
    @classmethod
    def _data_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        """Each must be a key; checked once they are secrets, so an error never echoes one."""
        for position, key in enumerate(keys, 1):
            try:
                decode_key(key.get_secret_value())
            except ValueError as exc:
                raise ValueError(f"key {position} of {len(keys)}: {exc}") from None
        return keys

    @field_validator("livevox_appendable_states", mode="before")
    @classmethod
    def _split_states(cls, value: object) -> object:
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, list | tuple):
            states = [str(s).strip().upper() for s in items if str(s).strip()]
            if not states:
                raise ValueError("APPENDQ_LIVEVOX_APPENDABLE_STATES needs at least one word")
            return states
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

    @model_validator(mode="after")
    def _pii_retention(self) -> Settings:
        """Personal data is never kept longer than the batches (0 = kept for ever)."""
        days = self.pii_retention_days
        if days is not None and self.retention_days > 0 and not 0 < days <= self.retention_days:
            raise ValueError(
                f"APPENDQ_PII_RETENTION_DAYS={days}: personal data is never kept longer than "
                f"APPENDQ_RETENTION_DAYS={self.retention_days} (1..{self.retention_days})"
            )
        return self

    @property
    def pii_days(self) -> int:
        """Days a finished batch keeps its payloads (0: for ever)."""
        if self.pii_retention_days is None:
            return max(self.retention_days, 0)
        return self.pii_retention_days

    @property
    def call_total_s(self) -> float:
        """The total deadline of one LiveVox call (httpx's timeouts bound each read, not the
        whole call): past it the drain stops waiting and the answer counts as lost."""
        return self.livevox_connect_timeout_s + self.livevox_read_timeout_s

    @property
    def call_deadline_s(self) -> float:
        """The call's total deadline plus a grace: a batch still ``sending`` past it belonged
        to a process that died mid-call."""
        return self.call_total_s + self.call_grace_s

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def livevox_is_local(self) -> bool:
        """LiveVox on a loopback address: the simulator (a real LiveVox never is)."""
        host = self.livevox_base_url.split("://", 1)[-1]
        return host.startswith(_LOOPBACK)

    def missing_livevox_credentials(self) -> list[str]:
        """The credentials still at the simulator's defaults while LiveVox is not local: such a
        process must refuse to start rather than send the simulator's secrets to a real LiveVox
        (each refused login also counts against the account)."""
        if self.livevox_is_local:
            return []
        defaults = {
            "APPENDQ_LIVEVOX_ACCESS_TOKEN": (self.livevox_access_token, SIMULATOR_TOKEN),
            "APPENDQ_LIVEVOX_PASSWORD": (self.livevox_password, SIMULATOR_PASSWORD),
        }
        return [
            name
            for name, (value, default) in defaults.items()
            if value.get_secret_value() in ("", default)
        ]

    def require_livevox_credentials(self) -> None:
        """Raise ``ConfigError`` naming the missing settings (see above)."""
        missing = self.missing_livevox_credentials()
        if missing:
            raise ConfigError(
                f"{' and '.join(missing)} not set while APPENDQ_LIVEVOX_BASE_URL is "
                f"{self.livevox_base_url}: the simulator's default credentials are never sent "
                "to a real LiveVox"
            )

    def warn_if_unsafe(self) -> None:
        """Say loudly at start when the rate window is shorter than LiveVox's real one."""
        if self.rate_window_s < LIVEVOX_WINDOW_S:
            log.warning(
                "APPENDQ_RATE_WINDOW_S=%s is shorter than LiveVox's %s s rolling window: "
                "only for tests and the simulator, never against a real LiveVox",
                self.rate_window_s,
                LIVEVOX_WINDOW_S,
            )
