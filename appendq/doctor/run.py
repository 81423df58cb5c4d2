"""``run_doctor``: the whole read-only checklist, step by step (see appendq.doctor.probe for the
calls, appendq.doctor.shapes for the readings)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from appendq.doctor import shapes
from appendq.doctor.probe import MAX_PAGES, Probe, error_message, json_body, safe_url
from appendq.doctor.report import DoctorReport, Mark
from appendq.redact import settings_secrets
from appendq.settings import Settings

OUTBOUND = 1


def run_doctor(
    settings: Settings,
    services: Sequence[int] = (),
    *,
    transport: httpx.BaseTransport | None = None,
) -> DoctorReport:
    """Probe the configured LiveVox without changing anything; the report says what it saw."""
    report = DoctorReport(
        base_url=safe_url(settings.livevox_base_url),
        client_name=settings.livevox_client_name,
        username=settings.livevox_username,
        secrets=settings_secrets(settings),
    )
    timeout = httpx.Timeout(
        settings.livevox_read_timeout_s, connect=settings.livevox_connect_timeout_s
    )
    with httpx.Client(
        base_url=settings.livevox_base_url,
        timeout=timeout,
        transport=transport,
        headers={"Accept": "application/json"},
    ) as http:
        probe = Probe(settings, http, report)
        if probe.login():
            probe.validate()
            probe.clock()
            _campaigns_and_lists(probe, services)
    return report


def _campaigns_and_lists(probe: Probe, services: Sequence[int]) -> None:
    found: list[Mapping[str, Any]] = []
    targets: list[int | None] = [*services] if services else [None]
    for service in targets:
        found.extend(_search(probe, service))
    _words(probe)
    _malformed_and_paging(probe)
    campaign_id = _pick(found, probe.settings.livevox_appendable_states)
    details_status = None
    if campaign_id is None:
        probe.report.add(
            "campaign details",
            Mark.UNKNOWN,
            "no campaign found today: details and transactionList not checked",
        )
    else:
        details_status = probe.details(campaign_id)
        _transactions(probe, campaign_id)
    probe.role(details_status)
    _shapes(probe)


def _search(probe: Probe, service: int | None) -> list[Mapping[str, Any]]:
    """One service's campaigns today; adds one check line for it."""
    name = f"campaigns of service {service}" if service is not None else "campaigns"
    observed = probe.observed
    good: list[Mapping[str, Any]] = []
    skipped = pages = 0
    for response in probe.search_pages(service):
        answer = json_body(response)
        if not response.is_success or not isinstance(answer, dict):
            summary = f"search answered {response.status_code}: {error_message(response)}"
            probe.report.add(name, Mark.FAIL, summary, status=response.status_code)
            return good
        pages += 1
        observed.search_keys = sorted({*observed.search_keys, *map(str, answer)})
        entries = answer.get("campaign")
        if not isinstance(entries, list):
            observed.shape_problems.append("search answer has no 'campaign' array")
            break
        observed.campaign_keys = sorted({*observed.campaign_keys, *shapes.key_names(entries)})
        for entry in entries:
            if shapes.campaign_problem(entry) is not None:
                skipped += 1
                continue
            good.append(entry)
            observed.status_words[shapes.status_of(entry)] += 1
            observed.type_ids[int(entry["typeId"])] += 1
    observed.pages += pages
    observed.malformed_campaigns += skipped
    observed.campaigns += len(good)
    _search_line(probe, name, good, pages, skipped)
    return good


def _search_line(
    probe: Probe, name: str, good: list[Mapping[str, Any]], pages: int, skipped: int
) -> None:
    tz = probe.settings.timezone
    words = Counter(shapes.status_of(e) for e in good)
    said = ", ".join(f"{w} {n}" for w, n in sorted(words.items()))
    extra = f"; {skipped} malformed skipped" if skipped else ""
    if not good:
        summary = f"none today ({tz}){extra}: nothing to append to yet"
        probe.report.add(name, Mark.UNKNOWN, summary, pages=pages, malformed=skipped)
        return
    summary = f"{len(good)} today ({tz}): {said}; {pages} page(s){extra}"
    probe.report.add(name, Mark.OK, summary, pages=pages, malformed=skipped, statuses=dict(words))


def _words(probe: Probe) -> None:
    observed = probe.observed
    words = set(observed.status_words)
    types = ", ".join(f"{t} ({n})" for t, n in sorted(observed.type_ids.items()))
    if not words:
        probe.report.add("status words", Mark.UNKNOWN, "no campaign seen: no word to check")
        return
    appendable = probe.settings.livevox_appendable_states
    unknown = sorted(words - set(appendable) - shapes.KNOWN_CLOSED_WORDS)
    said = f"seen {', '.join(sorted(words))}; typeIds {types}"
    details = {"words": sorted(words), "type_ids": sorted(observed.type_ids)}
    if unknown:
        summary = (
            f"{said}; unknown {', '.join(unknown)}: if one means Built/Paused/Playing, add it "
            "to APPENDQ_LIVEVOX_APPENDABLE_STATES"
        )
        probe.report.add("status words", Mark.UNKNOWN, summary, **details)
        return
    usable = sorted(words & set(appendable))
    summary = f"{said}; appendable here: {', '.join(usable) or 'none today'}"
    probe.report.add("status words", Mark.OK, summary, **details)


def _malformed_and_paging(probe: Probe) -> None:
    observed = probe.observed
    if observed.malformed_campaigns:
        probe.report.add(
            "malformed entries",
            Mark.UNKNOWN,
            f"{observed.malformed_campaigns} campaign entries without a usable id, status or "
            "typeId: appendq skips such an entry, not the page",
            count=observed.malformed_campaigns,
        )
    else:
        probe.report.add("malformed entries", Mark.OK, "none", count=0)
    if observed.next_followed and observed.pages >= MAX_PAGES:
        summary = f"still a next after {MAX_PAGES} pages: stopped there"
        probe.report.add("paging", Mark.UNKNOWN, summary)
    elif observed.next_followed:
        summary = f"followed next {observed.next_followed} time(s), to an empty next"
        probe.report.add("paging", Mark.OK, summary)
    else:
        summary = "every search fitted one page (next empty): paging not exercised"
        probe.report.add("paging", Mark.OK if observed.pages else Mark.UNKNOWN, summary)


def _pick(found: list[Mapping[str, Any]], appendable: Sequence[str]) -> int | None:
    """An outbound campaign in an appendable state if any, else any well-formed campaign."""
    for entry in found:
        if int(entry["typeId"]) == OUTBOUND and shapes.status_of(entry) in appendable:
            return int(entry["id"])
    return int(found[0]["id"]) if found else None


def _transactions(probe: Probe, campaign_id: int) -> None:
    entries = probe.transactions(campaign_id)
    if entries is None:
        return
    observed = probe.observed
    observed.transactions_seen = len(entries)
    observed.transaction_entry_keys = shapes.key_names(entries)
    key = shapes.phone_shape(list(entries))
    observed.phone_key = key
    if key is None:
        summary = (
            f"campaign {campaign_id} lists no transaction yet: phone key not seen (run again "
            "later, or on a campaign with records)"
        )
        probe.report.add("transactionList", Mark.UNKNOWN, summary)
        return
    sample = shapes.masked_sample(list(entries))
    details = {"phone_key": key, "entries": len(entries), "sample": sample}
    if key in shapes.READABLE_PHONE_KEYS:
        name = key.removesuffix("_strings")
        form = "plain strings" if key.endswith("_strings") else '{"phone", "ordinal"} objects'
        summary = f"phones under {name!r} as {form} (e.g. {sample}), {len(entries)} entries read"
        probe.report.add("transactionList", Mark.OK, summary, **details)
    elif key == "mixed":
        summary = "entries carry their phones in different shapes: reconciliation may hold"
        probe.report.add("transactionList", Mark.UNKNOWN, summary, **details)
    else:
        summary = (
            "entries carry no readable phone: a batch whose answer was lost cannot be proven "
            "landed, so appendq will hold it for an operator instead of re-sending"
        )
        probe.report.add("transactionList", Mark.FAIL, summary, **details)


def _shapes(probe: Probe) -> None:
    observed = probe.observed
    missing = shapes.missing_keys(observed.campaign_keys, shapes.SEARCH_ENTRY_KEYS)
    if observed.campaigns and missing:
        observed.shape_problems.append(f"campaign entries lack {', '.join(missing)}")
    if observed.transactions_seen and shapes.missing_keys(
        observed.transaction_entry_keys, shapes.TRANSACTION_ENTRY_KEYS
    ):
        observed.shape_problems.append("transactions lack accountTransactionId")
    if observed.shape_problems:
        summary = "; ".join(observed.shape_problems)
        probe.report.add("answer shapes", Mark.FAIL, summary, problems=observed.shape_problems)
    else:
        seen = ["login", "search"]
        seen += ["details"] if observed.details_keys else []
        seen += ["transactionList"] if observed.transaction_keys else []
        probe.report.add("answer shapes", Mark.OK, f"as appendq reads them ({', '.join(seen)})")
