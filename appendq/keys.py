"""Every Redis key appendq uses, in one place. All share the configured prefix (``appendq`` by default).

``{p}`` below is a LiveVox account's prefix (``Keys.for_account``): the configured prefix for the
account ``default``, ``{prefix}:acct:{name}`` for every other one, so each account has its own
queues, rate budget, drain lock, halt, campaign cache and dedupe hashes. The intake's own keys
(``idem``, ``ids``) and Celery's use the configured prefix alone, whatever the account.

| key                                 | type   | TTL        | written by                  | read by            |
|-------------------------------------|--------|------------|-----------------------------|--------------------|
| {p}:targets                         | set    | none       | producer (quota Lua: SADD; drops idle members past APPENDQ_MAX_TARGETS) | drain, status |
| {p}:admitted:{target}               | string | 60 s       | producer (target quota)     | target quota       |
| {p}:q:{target}                      | list   | none       | producer RPUSH              | drain claim (head) |
| {p}:inflight:{target}               | list   | none       | drain claim (Lua move)      | drain (recovery)   |
| {p}:rate                            | zset   | window past last score | rate limiter (Lua, TIME); slot keeper | rate limiter, status|
| {p}:rate:pause                      | string | 1 window   | drain after a 429           | rate limiter       |
| {p}:lock:drain                      | string | lease TTL  | drain lease (redis-py Lock, renewed) | drain       |
| {p}:halt                            | string | HALT_S     | drain after a 403 / login   | drain, status      |
| {p}:dry_run                         | string | 3 intervals| a dry-run drain, each tick  | status             |
| {p}:set_aside                       | hash   | none       | drain, `appendq targets`    | drain, status, metrics |
| {p}:target_failures                 | hash   | none       | drain (failed ticks/target) | drain              |
| {p}:tick                            | string | 2 intervals | tick gate (GCRA Lua, TIME) | tick task         |
| {p}:campaign:{target}:{day}         | string | cache TTL + 5 min | campaign resolver    | resolver, status   |
| {p}:refused:{campaign_id}           | string | refusal_s  | drain (campaign refused)    | resolver           |
| {p}:search                          | zset   | 1 minute   | resolver (Lua, TIME)        | resolver           |
| {p}:calling:{batch_id}             | string | call deadline, kept | drain, while the call runs | reconciliation |
| {p}:calseen:{batch_id}             | string | 2 days     | reconciliation (SET NX)     | reconciliation     |
| {p}:numberings:{client}             | hash   | none       | isolation (shape -> proven numbering) | isolation |
| {p}:dedupe:{target}:{day}           | hash   | 2 days     | producer (HSETNX)           | producer           |
| {p}:idem:{key}                      | string | 1 day      | HTTP intake                 | HTTP intake        |
| {p}:ids:{utc_day}                   | hash   | 3 days     | HTTP intake (with the push) | GET /v1/leads/{id} |
| {p}:depths                          | zset   | 25 hours   | tick task (a sample a minute) | console charts   |
| {p}:partitions                      | string | 1 hour     | tick task (SET NX: the daily partitions checked) | tick task |
| {prefix}:console:{sha256(cookie)}   | hash   | idle 1 h   | console sign-in             | console            |

``{target}`` is ``service:ID`` or ``campaign:ID``; ``{day}`` is YYYY-MM-DD in APPENDQ_TIMEZONE;
``refusal_s`` is APPENDQ_CAMPAIGN_REFUSAL_S (the value of ``{p}:refused:{campaign_id}`` is the
refusal's reason).
Celery's own keys (broker queue, results) are Celery's and are not listed here.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The account of a deployment without APPENDQ_ACCOUNTS_FILE (``appendq.accounts``).
DEFAULT_ACCOUNT = "default"


@dataclass(frozen=True)
class Keys:
    prefix: str = "appendq"

    def for_account(self, account: str) -> Keys:
        """The keys of one LiveVox account: under ``{prefix}:acct:{account}``, except the
        ``default`` account's, which keep the bare prefix (the queues of a deployment that
        predates accounts are drained as they were)."""
        if account == DEFAULT_ACCOUNT:
            return self
        return Keys(f"{self.prefix}:acct:{account}")

    @property
    def targets(self) -> str:
        return f"{self.prefix}:targets"

    def queue(self, target: str) -> str:
        return f"{self.prefix}:q:{target}"

    def inflight(self, target: str) -> str:
        return f"{self.prefix}:inflight:{target}"

    @property
    def rate(self) -> str:
        return f"{self.prefix}:rate"

    @property
    def rate_pause(self) -> str:
        return f"{self.prefix}:rate:pause"

    @property
    def tick(self) -> str:
        return f"{self.prefix}:tick"

    @property
    def halt(self) -> str:
        return f"{self.prefix}:halt"

    @property
    def dry_run(self) -> str:
        """Set by a dry-run worker on each tick: ``appendq status`` says no call is being made."""
        return f"{self.prefix}:dry_run"

    @property
    def set_aside(self) -> str:
        """target -> JSON {kind, reason, at, actor}: targets the drain skips until cleared."""
        return f"{self.prefix}:set_aside"

    @property
    def target_failures(self) -> str:
        """target -> consecutive ticks that failed on it unexpectedly."""
        return f"{self.prefix}:target_failures"

    @property
    def drain_lock(self) -> str:
        return f"{self.prefix}:lock:drain"

    def campaign(self, target: str) -> str:
        return f"{self.prefix}:campaign:{target}"

    def refused(self, campaign_id: int | str) -> str:
        return f"{self.prefix}:refused:{campaign_id}"

    @property
    def search_budget(self) -> str:
        return f"{self.prefix}:search"

    def calling(self, batch_id: int) -> str:
        """Set while a batch's Append call runs (kept alive by the caller, deleted after)."""
        return f"{self.prefix}:calling:{batch_id}"

    def calibration_seen(self, batch_id: int) -> str:
        """When a transaction list first showed this 204 batch (Redis ms): the list's lag bound."""
        return f"{self.prefix}:calseen:{batch_id}"

    def numbering(self, client: str) -> str:
        """Hash: refusal shape -> the numbering proven for that kind of message."""
        return f"{self.prefix}:numberings:{client}"

    def dedupe(self, target: str, day: str) -> str:
        return f"{self.prefix}:dedupe:{target}:{day}"

    def idempotency(self, key: str) -> str:
        return f"{self.prefix}:idem:{key}"

    def intake_ids(self, utc_day: str) -> str:
        return f"{self.prefix}:ids:{utc_day}"

    @property
    def depths(self) -> str:
        """Zset of ``minute:depth`` scored by the minute (epoch s): the account's queue depth,
        sampled by the tick task, for the console's 24-hour chart (``appendq.queue.depths``)."""
        return f"{self.prefix}:depths"

    @property
    def partitions(self) -> str:
        """Set (NX, 1 hour) when the tick task checks the daily partitions ahead
        (``appendq.db.partitions.ensure_ahead``): at most once an hour per account."""
        return f"{self.prefix}:partitions"

    def console_session(self, digest: str) -> str:
        """A console sign-in, by the SHA-256 of its cookie (the cookie itself is never stored)."""
        return f"{self.prefix}:console:{digest}"

    @property
    def all_pattern(self) -> str:
        return f"{self.prefix}:*"
