"""Several LiveVox accounts in process tests (issue #12): the accounts file the processes read,
the records a test queues for each account (with the moment it queued them), each account's
books at its simulator (its campaign's records, its client's Append calls) and what Redis still
holds for it.

A simulator started with ``--clients ACME,BETA`` seeds client k with service 1001+100k and
campaign 5001+100k (``appendq.simulator.config.seeded_clients``): ``hosted`` names them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from appendq.keys import Keys
from appendq.queue.item import QueuedRecord
from appendq.settings import Settings
from producer import connect
from tests.support.cluster import Cluster
from tests.support.invariants import make_leads, max_calls_in_window
from tests.support.procs import free_port
from workers.celery_app import tick_queue


@dataclass(frozen=True)
class LiveAccount:
    """One appendq account and where its LiveVox is: a client of a simulator process."""

    name: str
    client: str
    sim_url: str
    service: int
    campaign: int

    @property
    def target(self) -> str:
        return f"service:{self.service}"

    def records(self) -> list[dict[str, Any]]:
        """What the account's campaign received, in append order (with ``receivedAt``)."""
        with httpx.Client(base_url=self.sim_url, timeout=30) as admin:
            found: list[dict[str, Any]] = admin.get(
                f"/_admin/campaigns/{self.campaign}/records"
            ).json()
        return found

    def append_calls(self) -> list[dict[str, Any]]:
        """The Append calls of the account's client, as its simulator logged them."""
        with httpx.Client(base_url=self.sim_url, timeout=30) as admin:
            calls: list[dict[str, Any]] = admin.get("/_admin/calls").json()
        return [c for c in calls if c["kind"] == "append" and c["client"] == self.client]

    def stall_appends(self, seconds: float) -> None:
        """Every Append of this client from now on stalls ``seconds``, then is processed and
        answered normally (also when its caller is gone by then)."""
        fault = {"kind": "append", "fault": {"stall_s": seconds}, "times": 1_000_000}
        with httpx.Client(base_url=self.sim_url, timeout=30) as admin:
            admin.post("/_admin/faults", json={**fault, "client": self.client}).raise_for_status()


def hosted(sim_url: str, accounts: Sequence[tuple[str, str]]) -> list[LiveAccount]:
    """The (account name, client code) pairs of one simulator started with ``--clients`` in
    that order, with the service and campaign the simulator seeded for each."""
    return [
        LiveAccount(name, client, sim_url, 1001 + 100 * k, 5001 + 100 * k)
        for k, (name, client) in enumerate(accounts)
    ]


def launch_simulator(cluster: Cluster, log: str, clients: Sequence[str], *extra: str) -> str:
    """Start ``appendq simulator`` hosting ``clients`` on a free port, as a process of
    ``cluster``, without waiting for it (``answering`` tells): the other processes boot
    meanwhile. Its URL."""
    port = free_port()
    args = ["simulator", "--port", str(port), "--clients", ",".join(clients), *extra]
    cluster.start(log, args)
    return f"http://127.0.0.1:{port}"


def answering(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_admin/state", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def accounts_text(url: str, clients: Mapping[str, str], **extra: str) -> str:
    """APPENDQ_ACCOUNTS_FILE text: account name -> client name, every one on the LiveVox at
    ``url`` as user appendq, without secrets (a loopback LiveVox takes the simulator's);
    ``extra`` keys (e.g. ``acme_timezone="Pacific/Kiritimati"``) go to the account named before
    the first underscore."""
    tables = []
    for name, client in clients.items():
        lines = [f"[accounts.{name}]", f'base_url = "{url}"', f'client_name = "{client}"']
        lines.append('username = "appendq"')
        for key, value in extra.items():
            owner, _, field = key.partition("_")
            if owner == name:
                lines.append(f'{field} = "{value}"')
        tables.append("\n".join(lines) + "\n")
    return "\n".join(tables)


def write_accounts_file(path: Path, accounts: Iterable[LiveAccount]) -> Path:
    """An APPENDQ_ACCOUNTS_FILE for ``accounts``, each on its own simulator; no secrets."""
    path.write_text("\n".join(accounts_text(a.sim_url, {a.name: a.client}) for a in accounts))
    return path


@dataclass(frozen=True)
class Sent:
    """Records a test queued for one account in one submission, and when (the test's clock,
    taken just before the submission: a lateness measured from it is never understated)."""

    account: str
    target: str
    ids: tuple[str, ...]
    phones: tuple[str, ...]
    at: float


class Leads:
    """Queues distinct records (unique phone1 and account across the whole test) for the
    accounts of one settings object, and remembers every submission."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sent: list[Sent] = []
        self._next = 0

    def queue(self, account: LiveAccount, n: int, target: str | None = None) -> Sent:
        leads = make_leads(n, start=self._next)
        self._next += n
        to = target or account.target
        at = time.time()
        with connect(self.settings, account=account.name) as producer:
            receipt = producer.enqueue(to, leads)
        assert receipt.errors == [] and receipt.accepted == n, receipt
        sent = Sent(account.name, to, tuple(receipt.record_ids), _phones(leads), at)
        self.sent.append(sent)
        return sent

    def ids(self) -> list[str]:
        return [i for s in self.sent for i in s.ids]

    def phones_of(self, account: str) -> list[str]:
        return [p for s in self.sent if s.account == account for p in s.phones]


def _phones(leads: Iterable[dict[str, Any]]) -> tuple[str, ...]:
    return tuple(str(lead["phone1"]) for lead in leads)


def lateness(sent: Iterable[Sent], received: Iterable[dict[str, Any]]) -> dict[str, float | None]:
    """Seconds from queueing to landing at LiveVox (``receivedAt``) of each phone of ``sent``;
    None for a phone not landed."""
    landed = {str(r["phone1"]): float(r["receivedAt"]) for r in received}
    late: dict[str, float | None] = {}
    for s in sent:
        for phone in s.phones:
            late[phone] = landed[phone] - s.at if phone in landed else None
    return late


def landing_problems(account: LiveAccount, phones: Sequence[str]) -> list[str]:
    """How the account's campaign differs from holding each of ``phones`` exactly once."""
    got = Counter(str(r["phone1"]) for r in account.records())
    problems = []
    doubled = sorted(p for p, n in got.items() if n > 1)
    missing = sorted(set(phones) - set(got))
    foreign = sorted(set(got) - set(phones))
    for what, items in (("DOUBLED", doubled), ("LOST", missing), ("not queued", foreign)):
        if items:
            problems.append(f"{account.name}: {what} {len(items)}, e.g. {items[:5]}")
    return problems


def busiest_window(account: LiveAccount, window_s: float) -> int:
    """The most Append calls of the account's client that began within one rolling window."""
    return max_calls_in_window((c["at"] for c in account.append_calls()), window_s)


def still_queued(redis_url: str, prefix: str, account: str) -> list[str]:
    """Ids of the account's records still in Redis: pending or in flight, every target."""
    client = redis.Redis.from_url(redis_url)
    keys = Keys(prefix).for_account(account)
    try:
        found: list[str] = []
        for raw in client.smembers(keys.targets):
            target = raw.decode() if isinstance(raw, bytes) else str(raw)
            for key in (keys.queue(target), keys.inflight(target)):
                found += [QueuedRecord.loads(item).id for item in client.lrange(key, 0, -1)]
        return found
    finally:
        client.close()


def ticks_waiting(settings: Settings, account: str) -> int:
    """Ticks beat sent for ``account`` that no worker has taken: the length of its Celery queue
    (``workers.celery_app.tick_queue``, under Celery's key prefix)."""
    client = redis.Redis.from_url(settings.redis_url)
    try:
        return int(client.llen(f"{settings.redis_prefix}:celery:{tick_queue(settings, account)}"))
    finally:
        client.close()
