"""The one wall clock: aware UTC datetimes. Code that needs the time takes a ``clock`` (this by
default) so that tests can move time instead of sleeping.

``in_zone`` reads a moment an operator gave without a zone (``appendq audit --since``, the HTTP
retry's ``since``) in APPENDQ_TIMEZONE, the client's day, wherever it was given."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo


def utcnow() -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.now(UTC)


def in_zone(moment: datetime | None, tz: tzinfo) -> datetime | None:
    """``moment`` as given when it names its zone; a moment without one is read in ``tz``
    (the Settings' ``tz``: APPENDQ_TIMEZONE)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=tz)
