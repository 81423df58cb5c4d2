"""Every Redis key appendq uses, in one place. All share the configured prefix (``appendq`` by default).

| key                                 | type   | TTL        | written by                  | read by            |
|-------------------------------------|--------|------------|-----------------------------|--------------------|
| {p}:targets                         | set    | none       | producer (SADD on enqueue)  | drain, status      |
| {p}:q:{target}                      | list   | none       | producer RPUSH              | drain claim (head) |
| {p}:inflight:{target}               | list   | none       | drain claim (Lua move)      | drain (recovery)   |
| {p}:rate                            | zset   | 2 windows  | rate limiter (Lua, TIME)    | rate limiter, status|
| {p}:rate:pause                      | string | 1 window   | drain after a 429           | rate limiter       |
| {p}:lock:drain                      | string | lock TTL   | drain (redis-py Lock)       | drain              |
| {p}:halt                            | string | HALT_S     | drain after a 403 / login   | drain, status      |
| {p}:tick                            | string | 0.9 interval | tick task (SET NX)        | tick task          |
| {p}:campaign:{target}               | string | cache TTL  | campaign resolver           | resolver, status   |
| {p}:refused:{campaign_id}           | string | refusal_s  | drain (campaign refused)    | resolver           |
| {p}:dedupe:{target}:{day}           | hash   | 2 days     | producer (HSETNX)           | producer           |
| {p}:idem:{key}                      | string | 1 day      | HTTP intake                 | HTTP intake        |

``{target}`` is ``service:ID`` or ``campaign:ID``; ``{day}`` is YYYY-MM-DD in APPENDQ_TIMEZONE;
``refusal_s`` is APPENDQ_CAMPAIGN_REFUSAL_S (the value of ``{p}:refused:{campaign_id}`` is the
refusal's reason).
Celery's own keys (broker queue, results) are Celery's and are not listed here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = "appendq"

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
    def drain_lock(self) -> str:
        return f"{self.prefix}:lock:drain"

    def campaign(self, target: str) -> str:
        return f"{self.prefix}:campaign:{target}"

    def refused(self, campaign_id: int | str) -> str:
        return f"{self.prefix}:refused:{campaign_id}"

    def dedupe(self, target: str, day: str) -> str:
        return f"{self.prefix}:dedupe:{target}:{day}"

    def idempotency(self, key: str) -> str:
        return f"{self.prefix}:idem:{key}"

    @property
    def all_pattern(self) -> str:
        return f"{self.prefix}:*"
