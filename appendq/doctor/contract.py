"""Contract snapshots: what ``appendq doctor`` saw of a LiveVox account's shapes, redacted, as
JSON the simulator loads (``appendq simulator --contract FILE``) to play that account's dialect.

A snapshot holds key names, status words, type ids, counts, the phone key, the API path forms
and the clock offset: no secret, no campaign or service id, no name, no phone number. Its
``dialect`` object holds only the dialect fields a read-only probe can observe (phone_key,
built_word, malformed_campaign, unversioned_only); the others (numbering, refusal and rate
statuses, transactionList visibility, unknown fields) are listed under ``unobserved`` and keep
the simulator's defaults.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appendq.doctor import shapes
from appendq.doctor.report import DoctorReport, Observed

KIND = "appendq.livevox-contract"
SCHEMA = 1
UNOBSERVED = (
    "numbering",
    "refusal_status",
    "rate_limit_status",
    "tx_visibility",
    "tx_delay_s",
    "unknown_fields",
)


def observed_dialect(observed: Observed) -> dict[str, Any]:
    """The simulator dialect fields the observations determine (absent when not seen)."""
    dialect: dict[str, Any] = {}
    if observed.phone_key in shapes.READABLE_PHONE_KEYS or observed.phone_key == "none":
        dialect["phone_key"] = observed.phone_key
    word = shapes.built_word(observed.status_words)
    if word is not None:
        dialect["built_word"] = word
    if observed.pages:
        dialect["malformed_campaign"] = observed.malformed_campaigns > 0
    if observed.versioned_paths is not None or observed.unversioned_paths is not None:
        dialect["unversioned_only"] = (
            observed.versioned_paths is False and observed.unversioned_paths is True
        )
    return dialect


def contract_snapshot(report: DoctorReport, *, taken_at: datetime | None = None) -> dict[str, Any]:
    o = report.observed
    moment = taken_at or datetime.now(UTC)
    return {
        "kind": KIND,
        "schema": SCHEMA,
        "taken_at": moment.isoformat(timespec="seconds"),
        "api": {
            "version": o.api_version,
            "versioned_paths": o.versioned_paths,
            "unversioned_paths": o.unversioned_paths,
            "tls": o.tls_version,
        },
        "login": {"keys": o.login_keys},
        "search": {
            "keys": o.search_keys,
            "campaign_keys": o.campaign_keys,
            "status_words": dict(sorted(o.status_words.items())),
            "type_ids": {str(t): n for t, n in sorted(o.type_ids.items())},
            "campaigns": o.campaigns,
            "malformed_entries": o.malformed_campaigns,
            "pages": o.pages,
            "next_followed": o.next_followed,
        },
        "details": {"keys": o.details_keys, "status_word": o.details_status},
        "transaction_list": {
            "keys": o.transaction_keys,
            "entry_keys": o.transaction_entry_keys,
            "entries_seen": o.transactions_seen,
            "phone_key": o.phone_key,
        },
        "clock_offset_s": o.clock_offset_s,
        "shape_problems": o.shape_problems,
        "dialect": observed_dialect(o),
        "unobserved": list(UNOBSERVED),
    }


def save_contract(report: DoctorReport, path: str | Path) -> dict[str, Any]:
    """Write the report's contract snapshot (secrets scrubbed once more) and return it."""
    snapshot: dict[str, Any] = report.as_json(contract_snapshot(report))["contract"]
    Path(path).write_text(json.dumps(snapshot, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return snapshot
