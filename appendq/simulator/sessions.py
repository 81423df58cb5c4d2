"""LiveVox's login sessions: a login opens one per (client, user, LV-Access token, agent), or
hands back the one already open; every call in a session restarts its idle timer, and
``session_idle_s`` without a call ends it (rolling expiry).

Not thread-safe by itself: :class:`appendq.simulator.state.SimulatorState` holds the lock.
"""

from __future__ import annotations

import uuid

from appendq.simulator.config import UserSpec
from appendq.simulator.model import Session, SimError


class Sessions:
    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        self._by_id: dict[str, Session] = {}

    def open(self, user: UserSpec, token: str, agent: bool, now: float) -> Session:
        """The session of a successful login, its idle timer restarted."""
        self._expire_idle(now)
        key = (user.client, user.user, token, agent)
        session = next(
            (s for s in self._by_id.values() if (s.client, s.user, s.token, s.agent) == key), None
        )
        if session is None:
            session = Session(
                str(uuid.uuid4()), user.client, user.user, user.role, agent, token, now
            )
            self._by_id[session.id] = session
        session.last_used = now
        return session

    def use(self, session_id: str | None, now: float) -> Session:
        """The live session a call names, its idle timer restarted; 401 if there is none."""
        self._expire_idle(now)
        session = self._by_id.get(session_id or "")
        if session is None:
            raise SimError(401, "session invalid or expired")
        session.last_used = now
        return session

    def client_of(self, session_id: str | None, now: float) -> str | None:
        """The client of a live session, or None: a look that restarts no idle timer and ends
        no session, so that naming a call's client (for its rate window, faults and the call
        log) changes nothing the call itself will see."""
        session = self._by_id.get(session_id or "")
        if session is None or now - session.last_used > self.idle_s:
            return None
        return session.client

    def close(self, session_id: str, now: float) -> bool:
        self._expire_idle(now)
        return self._by_id.pop(session_id, None) is not None

    def clear(self) -> int:
        count = len(self._by_id)
        self._by_id.clear()
        return count

    def live(self, now: float) -> int:
        self._expire_idle(now)
        return len(self._by_id)

    def _expire_idle(self, now: float) -> None:
        for sid in [s.id for s in self._by_id.values() if now - s.last_used > self.idle_s]:
            del self._by_id[sid]
