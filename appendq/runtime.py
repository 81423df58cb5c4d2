"""Build the long-lived parts (Redis client, SQLAlchemy engine, payload cipher, LiveVox client,
drainer) from one Settings object, and close them. Entry points (CLI commands, Celery process
hooks, the HTTP app, tests) call this; nothing is built at import time. Every session it makes
carries the payload cipher (``appendq.crypto.cipher_of``)."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

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
class Runtime:
    settings: Settings
    redis: redis.Redis
    keys: Keys
    engine: Engine
    sessions: sessionmaker[Session]
    queue: RecordQueue
    limiter: RateLimiter
    cipher: PayloadCipher
    _client: LiveVoxClient | None = None

    @classmethod
    def build(cls, settings: Settings, *, cipher: PayloadCipher | None = None) -> Runtime:
        """``cipher``: the one of APPENDQ_DATA_KEYS (or the development key) unless given."""
        cipher = cipher or cipher_for(settings)
        client = redis.Redis.from_url(settings.redis_url)
        keys = Keys(settings.redis_prefix)
        engine = make_engine(settings)
        sessions = make_sessionmaker(engine)
        sessions.configure(info={SESSION_KEY: cipher})
        limiter = RateLimiter(
            client,
            keys,
            max_calls=settings.rate_max_calls,
            window_s=settings.rate_window_s,
            margin_s=settings.rate_margin_s,
            hold_s=settings.call_deadline_s,
        )
        return cls(
            settings,
            client,
            keys,
            engine,
            sessions,
            RecordQueue(client, keys),
            limiter,
            cipher,
        )

    @property
    def client(self) -> LiveVoxClient:
        if self._client is None:
            self.settings.require_livevox_credentials()
            self._client = LiveVoxClient(self.settings)
        return self._client

    def resolver(self) -> CampaignResolver:
        return CampaignResolver(
            self.client,
            self.redis,
            self.keys,
            tz=self.settings.tz,
            cache_s=self.settings.campaign_cache_s,
            refusal_s=self.settings.campaign_refusal_s,
            states=self.settings.livevox_appendable_states,
            searches_per_minute=self.settings.campaign_searches_per_minute,
            clock=utcnow,
        )

    def drainer(self) -> Drainer:
        return Drainer(
            settings=self.settings,
            redis=self.redis,
            keys=self.keys,
            queue=self.queue,
            limiter=self.limiter,
            sessions=self.sessions,
            client=self.client,
            resolver=self.resolver(),
        )

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self.engine.dispose()
        self.redis.close()
