"""Build the long-lived parts (Redis client, SQLAlchemy engine, payload cipher, and per LiveVox
account: its queue, rate limiter, LiveVox client and drainer) from one Settings object, and close
them. Entry points (CLI commands, Celery process hooks, the HTTP app, tests) call this; nothing is
built at import time. Every session it makes carries the payload cipher
(``appendq.crypto.cipher_of``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis
from redis import Redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from appendq.accounts import Account, Accounts, load_accounts
from appendq.clock import utcnow
from appendq.crypto import SESSION_KEY, PayloadCipher, cipher_for
from appendq.db.engine import make_engine, make_sessionmaker
from appendq.drain.context import Drainer
from appendq.keys import Keys
from appendq.livevox.campaigns import CampaignResolver
from appendq.livevox.client import LiveVoxClient
from appendq.livevox.ratelimit import RateLimiter
from appendq.queue.record_queue import RecordQueue
from appendq.settings import Settings


@dataclass
class Lane:
    """One LiveVox account's parts in this process: its keys, queue, rate limiter (its own
    budget of 5 calls a rolling minute) and LiveVox client (its own session), built once."""

    account: Account
    redis: Redis
    keys: Keys
    queue: RecordQueue
    limiter: RateLimiter
    _client: LiveVoxClient | None = None

    @classmethod
    def build(cls, account: Account, client: Redis) -> Lane:
        s = account.settings
        keys = account.keys()
        limiter = RateLimiter(
            client,
            keys,
            max_calls=s.rate_max_calls,
            window_s=s.rate_window_s,
            margin_s=s.rate_margin_s,
            hold_s=s.call_deadline_s,
        )
        return cls(account, client, keys, RecordQueue(client, keys, account.name), limiter)

    @property
    def settings(self) -> Settings:
        return self.account.settings

    @property
    def client(self) -> LiveVoxClient:
        if self._client is None:
            self.settings.require_livevox_credentials()
            self._client = LiveVoxClient(self.settings)
        return self._client

    def resolver(self) -> CampaignResolver:
        s = self.settings
        return CampaignResolver(
            self.client,
            self.redis,
            self.keys,
            tz=s.tz,
            cache_s=s.campaign_cache_s,
            refusal_s=s.campaign_refusal_s,
            states=s.livevox_appendable_states,
            searches_per_minute=s.campaign_searches_per_minute,
            clock=utcnow,
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


@dataclass
class Runtime:
    settings: Settings
    redis: redis.Redis
    #: The bare prefix's keys: the default account's, and the intake's own (receipts, ids).
    keys: Keys
    engine: Engine
    sessions: sessionmaker[Session]
    cipher: PayloadCipher
    accounts: Accounts
    _lanes: dict[str, Lane] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings, *, cipher: PayloadCipher | None = None) -> Runtime:
        """``cipher``: the one of APPENDQ_DATA_KEYS (or the development key) unless given.
        Raises ``ConfigError`` for a bad APPENDQ_ACCOUNTS_FILE."""
        accounts = load_accounts(settings)
        remote = [a.name for a in accounts.values() if not a.settings.livevox_is_local]
        cipher = cipher or cipher_for(settings, remote)
        client = redis.Redis.from_url(settings.redis_url)
        engine = make_engine(settings)
        sessions = make_sessionmaker(engine)
        sessions.configure(info={SESSION_KEY: cipher})
        keys = Keys(settings.redis_prefix)
        return cls(settings, client, keys, engine, sessions, cipher, accounts)

    def lane(self, account: str | None = None) -> Lane:
        """The parts of ``account`` (None: ``default``); InvalidValue for an unknown one."""
        found = self.accounts.get_account(account)
        if found.name not in self._lanes:
            self._lanes[found.name] = Lane.build(found, self.redis)
        return self._lanes[found.name]

    def drainer(self, account: str | None = None) -> Drainer:
        lane = self.lane(account)
        return Drainer(
            settings=lane.settings,
            redis=self.redis,
            keys=lane.keys,
            queue=lane.queue,
            limiter=lane.limiter,
            sessions=self.sessions,
            client=lane.client,
            resolver=lane.resolver(),
            account=lane.account.name,
        )

    # The default account's parts, for single-account callers (and most tests).
    @property
    def queue(self) -> RecordQueue:
        return self.lane().queue

    @property
    def limiter(self) -> RateLimiter:
        return self.lane().limiter

    @property
    def client(self) -> LiveVoxClient:
        return self.lane().client

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for lane in self._lanes.values():
            lane.close()
        self._lanes.clear()
        self.engine.dispose()
        self.redis.close()
