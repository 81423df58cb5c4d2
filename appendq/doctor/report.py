"""The doctor's typed report: a checklist of ✓/✗/? lines, what it observed, how to exit.

Nothing in a report is secret or personal: the probe puts only key names, status words, type
ids, counts and masked phone numbers into it, and ``lines``/``as_json`` scrub the known secrets
once more on the way out.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from appendq.redact import scrub, scrub_value

EXIT_OK = 0
#: Some check failed (unreachable, wrong shape, role, ...).
EXIT_FAILED = 1
#: LiveVox refused the credentials.
EXIT_LOGIN_DENIED = 2


class Mark(StrEnum):
    OK = "✓"
    FAIL = "✗"
    UNKNOWN = "?"


@dataclass(frozen=True)
class Check:
    name: str
    mark: Mark
    summary: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mark": self.mark.value,
            "ok": self.mark is not Mark.FAIL,
            "summary": self.summary,
            "details": self.details,
        }


@dataclass
class Observed:
    """What the probe saw of LiveVox's shapes (the material of a contract snapshot)."""

    api_version: str = ""
    versioned_paths: bool | None = None
    unversioned_paths: bool | None = None
    login_keys: list[str] = field(default_factory=list)
    search_keys: list[str] = field(default_factory=list)
    campaign_keys: list[str] = field(default_factory=list)
    status_words: Counter[str] = field(default_factory=Counter)
    type_ids: Counter[int] = field(default_factory=Counter)
    campaigns: int = 0
    malformed_campaigns: int = 0
    pages: int = 0
    next_followed: int = 0
    details_keys: list[str] = field(default_factory=list)
    details_status: str | None = None
    transaction_keys: list[str] = field(default_factory=list)
    transaction_entry_keys: list[str] = field(default_factory=list)
    transactions_seen: int = 0
    #: phone, phones, phone_strings, phones_strings, none, mixed, or None (no entry seen).
    phone_key: str | None = None
    clock_offset_s: float | None = None
    tls_version: str | None = None
    shape_problems: list[str] = field(default_factory=list)


@dataclass
class DoctorReport:
    base_url: str
    client_name: str
    username: str
    checks: list[Check] = field(default_factory=list)
    observed: Observed = field(default_factory=Observed)
    login_denied: bool = False
    #: Secrets to blank from anything printed (token, password, session id); never output.
    secrets: list[str] = field(default_factory=list, repr=False)

    def add(self, name: str, mark: Mark, summary: str, **details: Any) -> Check:
        check = Check(name, mark, summary, details)
        self.checks.append(check)
        return check

    @property
    def exit_code(self) -> int:
        if self.login_denied:
            return EXIT_LOGIN_DENIED
        if any(c.mark is Mark.FAIL for c in self.checks):
            return EXIT_FAILED
        return EXIT_OK

    def lines(self) -> list[str]:
        """The checklist as printed. A refused login is one line and nothing else."""
        if self.login_denied:
            denied = next(c for c in self.checks if c.name == "login")
            return [scrub(f"{denied.mark.value} {denied.summary}", self.secrets)]
        head = f"appendq doctor: {self.base_url} (client {self.client_name}, user {self.username})"
        checks = (f"{c.mark.value} {c.name}: {c.summary}" for c in self.checks)
        lines = [head, *(scrub(line, self.secrets) for line in checks)]
        counts = Counter(c.mark for c in self.checks)
        lines.append(
            f"{counts[Mark.OK]} ✓, {counts[Mark.FAIL]} ✗, {counts[Mark.UNKNOWN]} ?"
            " (read-only: nothing was appended)"
        )
        return lines

    def as_json(self, contract: dict[str, Any] | None = None) -> dict[str, Any]:
        document = {
            "base_url": self.base_url,
            "client_name": self.client_name,
            "username": self.username,
            "ok": self.exit_code == EXIT_OK,
            "exit_code": self.exit_code,
            "login_denied": self.login_denied,
            "checks": [c.as_json() for c in self.checks],
            "contract": contract,
        }
        scrubbed = scrub_value(document, self.secrets)
        assert isinstance(scrubbed, dict)  # a dict is scrubbed into a dict
        return scrubbed
