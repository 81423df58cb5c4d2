"""The books of a chaos trial: every accepted record followed to PostgreSQL, Redis and LiveVox.

Counted **per record id**: every lead carries a unique ``firstName`` (its *tag*), which LiveVox
keeps, so a landed record maps to one record id even when phones repeat (the two-target faults
send one phone1 through ``service:1001`` and ``campaign:5001``: LiveVox then rightly holds that
phone twice, once per record; "sent twice" is one record id landing twice). FIFO is checked per
target, in the order each target accepted its leads.

Allowed duplicates: records of a batch an operator re-sent after a preview that warned "may
send twice" (in_doubt, or held after a reconciliation that could not rule out a landing), and
that was still in that previewed state at the confirmation (``operator.retry(only=...)`` moves
nothing else).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.chaos_plan import DRAIN_INTERVAL_S, MAX_CALLS, PINNED, TARGET, WINDOW_S

LOST = (
    "  lost: nowhere (not in Redis, not in PostgreSQL)",
    "  lost: appended in the audit, never at LiveVox",
)
#: Duplicates an operator was warned about at the preview and confirmed on an unchanged batch.
ALLOWED_TWICE = {
    "in_doubt": "sent twice via re-sent in_doubt",
    "held": "sent twice via re-sent held (warned at the preview)",
    "operator_hold": "sent twice via re-sent held (warned at the preview)",
}
SETTLED = ("appended", "held", "rejected", "in_doubt", "failed")


@dataclass(frozen=True)
class Lead:
    rid: str
    target: str
    tag: str  # the lead's unique firstName
    phone: str


@dataclass(frozen=True)
class Row:
    """A record as PostgreSQL has it: its status (or its batch's) and whether the batch is held
    for an operator (the audit then says "may have landed", not "not appended")."""

    status: str
    operator_hold: bool = False


@dataclass
class Books:
    figures: Counter[str] = field(default_factory=Counter)
    anomalies: list[str] = field(default_factory=list)

    def flag(self, figure: str, what: str, n: int = 1) -> None:
        """Count ``n`` under ``figure`` and note an anomaly."""
        self.figures[figure] += n
        self.anomalies.append(what)


@dataclass(frozen=True)
class Seen:
    """What the trial saw, to be counted: the leads accepted in order, PostgreSQL's rows, the ids
    still queued (any target), LiveVox's records and calls, and the operator's re-sends."""

    accepted: list[Lead]
    rows: Mapping[str, Row]
    queued: set[str]
    at_sim: list[dict[str, Any]]
    calls: list[dict[str, Any]]
    #: record id -> the statuses its batch was re-sent from after a warning, one per re-send
    resent: Mapping[str, list[str]]


def count(books: Books, seen: Seen, *, window_s: float, max_calls: int, rate_status: int) -> None:
    f = books.figures
    f["trials"] += 1
    f["records accepted"] += len(seen.accepted)
    by_tag = {lead.tag: lead for lead in seen.accepted}
    received = Counter(str(r.get("firstName")) for r in seen.at_sim)
    unknown = sum(n for tag, n in received.items() if tag not in by_tag)
    if unknown:
        books.flag("at LiveVox, no record of ours", f"{unknown} records at LiveVox not ours")
    for lead in seen.accepted:
        f[f"records accepted via {lead.target}"] += 1
        _count_record(
            books, lead, seen.rows.get(lead.rid), lead.rid in seen.queued, seen, received[lead.tag]
        )
    _count_shared_phones(books, seen.accepted, received)
    _count_fifo(books, seen.accepted, seen.at_sim)
    _count_rate(books, seen.calls, window_s, max_calls, rate_status)


def _count_record(
    books: Books, lead: Lead, row: Row | None, queued: bool, seen: Seen, received: int
) -> None:
    f = books.figures
    status = row.status if row else ("queued" if queued else "nowhere")
    f[status if status in SETTLED else "unsettled"] += 1
    resends = seen.resent.get(lead.rid, [])
    problem = None
    if status == "nowhere":
        problem = LOST[0]
    elif status == "appended" and not received:
        problem = LOST[1]
    elif received > 1:
        # each warned re-send may add one copy; a copy more is a real duplicate
        allowed = received <= 1 + len(resends) and resends[0] in ALLOWED_TWICE
        problem = ALLOWED_TWICE[resends[0]] if allowed else "sent twice"
    elif received and status not in ("appended", "in_doubt") and not resends:
        if row is not None and row.operator_hold:
            f["at LiveVox, held for an operator (may have landed)"] += 1
            return
        problem = "at LiveVox but audit says not appended"
    if problem is None:
        return
    if problem in LOST:
        f["lost"] += 1
    if problem in ALLOWED_TWICE.values():
        f[problem] += 1
        return
    books.flag(problem, f"{problem.strip()}: record {lead.rid} ({lead.target}, {status})")


def _count_shared_phones(books: Books, accepted: Iterable[Lead], received: Counter[str]) -> None:
    """Phones LiveVox holds under two record ids of two targets: legitimate, counted apart."""
    targets: dict[str, set[str]] = {}
    for lead in accepted:
        if received[lead.tag]:
            targets.setdefault(lead.phone, set()).add(lead.target)
    books.figures["phones at LiveVox once per target (two records)"] += sum(
        len(t) > 1 for t in targets.values()
    )


def _count_fifo(books: Books, accepted: list[Lead], at_sim: list[dict[str, Any]]) -> None:
    """Per target: records whose first landing came after a record accepted later."""
    position: dict[str, tuple[str, int]] = {}
    per_target: Counter[str] = Counter()
    for lead in accepted:
        position[lead.tag] = (lead.target, per_target[lead.target])
        per_target[lead.target] += 1
    highest: dict[str, int] = {}
    late = 0
    for tag in dict.fromkeys(str(r.get("firstName")) for r in at_sim):
        if tag not in position:
            continue
        target, at = position[tag]
        late += at < highest.get(target, -1)
        highest[target] = max(highest.get(target, -1), at)
    if late:
        books.flag(
            "out of FIFO order (records)", f"{late} records reached LiveVox out of FIFO order", late
        )


def _count_rate(
    books: Books, calls: list[dict[str, Any]], window_s: float, max_calls: int, rate_status: int
) -> None:
    """Windows over the limit by the calls' arrival times, and LiveVox's own rate-limit answers
    to calls no fault was injected into (it counts a late-landing call when it processes it)."""
    f = books.figures
    appends = [c for c in calls if c["kind"] == "append"]
    violations, most = rate_violations([c["at"] for c in appends], window_s, max_calls)
    f["max appends in any window"] = max(f["max appends in any window"], most)
    if violations:
        books.flag(
            "rate-window violations",
            f"{violations} rate-window violations (max {most})",
            violations,
        )
    refused = sum(c["status"] == rate_status and not c.get("fault") for c in appends)
    if refused:
        books.flag(
            "LiveVox rate-limit answers not injected",
            f"LiveVox answered {refused} calls with its rate-limit status {rate_status}",
            refused,
        )


def rate_violations(times: list[float], window: float, max_calls: int) -> tuple[int, int]:
    """(calls that open a window [t, t + window) holding more than max_calls, the most held)."""
    times = sorted(times)
    violations, most, end = 0, 0, 0
    for start, at in enumerate(times):
        end = max(end, start)
        while end < len(times) and times[end] - at < window:
            end += 1
        held = end - start
        most = max(most, held)
        violations += held > max_calls
    return violations, most


# -- the run's summary ------------------------------------------------------------------------

FIGURES = (
    "trials",
    "records accepted",
    "appended",
    "held",
    "rejected",
    "in_doubt",
    "failed",
    "unsettled",
    "lost",
    "  lost: nowhere (not in Redis, not in PostgreSQL)",
    "  lost: appended in the audit, never at LiveVox",
    "sent twice",
    "sent twice via re-sent in_doubt",
    "sent twice via re-sent held (warned at the preview)",
    "at LiveVox but audit says not appended",
    "at LiveVox, held for an operator (may have landed)",
    "at LiveVox, no record of ours",
    "out of FIFO order (records)",
    "rate-window violations",
    "LiveVox rate-limit answers not injected",
    "max appends in any window",
    "worker kill -9",
    "worker crashes at APPENDQ_CRASH_AT",
    "worker exits without a crash point",
    "Redis kill -9 + restart",
    "simulator faults injected",
    "batch sending -> appended",
    "batch sending -> in_doubt",
    "batch sending -> ready",
    "batch sending -> retry_wait",
    "batch sending -> held",
    "batch sending -> rejected",
)
#: The faults of issue 8 and what they did.
FENCE_FIGURES = (
    "freeze: trials",
    "freeze: workers frozen past the lease TTL",
    "freeze: frozen while a drain held the lock",
    "freeze: frozen with an Append in flight",
    "freeze: stopped itself after_sending",
    "freeze: stopped itself after_append",
    "freeze: never reached its step",
    "freeze: standby workers started",
    "leases found lost by the watchdog",
    "drains stopped on a lost lease",
    "leases found expired at the tick's end",
    "long calls: trials (read timeout 1.5 s)",
    "long calls: stalls injected (processed, then stalled)",
    "long calls: stalls injected (stalled, then landing late)",
    "rate budget reads",
    "status reads",
    "scrapes failed",
    "operator: trials",
    "operator: previews",
    "operator: batches previewed",
    "operator: batches moved",
    "operator: moved from in_doubt",
    "operator: moved from held",
    "operator: moved from operator_hold",
    "operator: moved from failed",
    "operator: batches left alone (changed since the preview)",
    "two targets: trials",
    f"records accepted via {TARGET}",
    f"records accepted via {PINNED}",
    "phones at LiveVox once per target (two records)",
)
#: Per-dialect columns of the summary: (figure, label).
DIALECT_COLUMNS = (
    ("trials", "trials"),
    ("records accepted", "records"),
    ("appended", "appended"),
    ("held", "held"),
    ("lost", "lost"),
    ("sent twice", "twice"),
    ("sent twice via re-sent in_doubt", "twice(op)"),
    ("rate-window violations", "windows"),
    ("LiveVox rate-limit answers not injected", "429s"),
    ("unsettled", "unsettled"),
    ("freeze: workers frozen past the lease TTL", "freezes"),
    ("long calls: trials (read timeout 1.5 s)", "long-call"),
    ("operator: previews", "op-races"),
    ("operator: batches left alone (changed since the preview)", "left"),
    ("two targets: trials", "2-target"),
    ("trials with an anomaly", "anomalous"),
)


def add_up(
    total: Counter[str], by_dialect: dict[str, Counter[str]], dialect: str, books: Books
) -> None:
    """Add a trial's books to the run's totals and to its dialect's row."""
    per = by_dialect.setdefault(dialect, Counter())
    per.update({k: books.figures[k] for k, _ in DIALECT_COLUMNS})
    per["trials with an anomaly"] += bool(books.anomalies)
    most = max(total["max appends in any window"], books.figures["max appends in any window"])
    total.update(books.figures)
    total["max appends in any window"] = most


def print_dialects(by_dialect: dict[str, Counter[str]]) -> None:
    """One row per dialect played: its trials, books and faults of issue 8."""
    print()
    print(f"{'dialect':<11}" + "".join(f"{label:>10}" for _, label in DIALECT_COLUMNS))
    for name in sorted(by_dialect):
        row = by_dialect[name]
        print(f"{name:<11}" + "".join(f"{row[c]:>10,}" for c, _ in DIALECT_COLUMNS))


def print_figures(total: Counter[str], seed: int, elapsed: float) -> None:
    print()
    print(
        f"chaos: {MAX_CALLS} calls per {WINDOW_S:g} s, {DRAIN_INTERVAL_S:g} s drain interval, "
        f"seed {seed}"
    )
    for name in FIGURES:
        print(f"{name:<58} {total[name]:>12,}")
    print("faults of issue 8 (fence every drain):")
    for name in FENCE_FIGURES:
        print(f"{name:<58} {total[name]:>12,}")
    print(f"{'elapsed':<58} {elapsed:>11.0f}s")
