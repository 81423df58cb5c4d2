"""The dry run (``appendq worker --dry-run``, APPENDQ_DRY_RUN): everything against the configured
LiveVox except the Append call, so that an operator can watch a day's traffic before going live.

The worker logs in, resolves today's campaigns, claims and persists batches exactly as it would;
then, where it would take a rate slot and call Append, it moves the batch to ``dry_run`` with the
campaign it would have used, and the tick ends (one batch per tick, as for real). ``appendq
status`` says a dry run is in force while the worker ticks; ``appendq retry --status dry_run``
sends such batches for real once the worker runs without ``--dry-run``.
"""

from __future__ import annotations

import logging

from appendq.batches.views import BatchView
from appendq.db.models import BatchStatus
from appendq.drain.context import Drainer, DrainReport, Tick

log = logging.getLogger(__name__)


def settle(
    d: Drainer, batch: BatchView, campaign_id: int, records: int, why_campaign: str
) -> DrainReport:
    """Audit the batch as ``dry_run``: no rate slot, no Append call."""
    reason = f"dry run: {records} records would have been appended to campaign {campaign_id}"
    with d.store() as store:
        moved = store.mark_dry_run(batch, campaign_id, f"{reason} ({why_campaign})", records)
    if moved is None:
        return DrainReport(Tick.WAITING, batch.target, batch.id, reason="batch changed meanwhile")
    return DrainReport(
        BatchStatus.DRY_RUN, batch.target, batch.id, records, campaign_id, reason=reason
    )


def mark_active(d: Drainer) -> None:
    """Tell ``appendq status`` that a dry run is in force (for three intervals)."""
    ttl_ms = max(int(d.settings.drain_interval_s * 3000), 1000)
    d.redis.set(d.keys.dry_run, d.actor, px=ttl_ms)
