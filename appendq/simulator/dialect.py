"""Dialects: the simulator's answer to each corner of LiveVox the public record leaves open.

One frozen :class:`Dialect` holds a setting per corner (see "Unconfirmed corners" in
``shared/livevox-api.md``); its defaults are the simulator's original guesses. It is set by the
configuration (``"dialect": {field: value}``, ``--config`` and ``POST /_admin/reset``), by
``POST /_admin/dialect`` (changes only the fields given), by ``--dialect k=v,...`` and by
``--contract FILE`` (a snapshot written by ``appendq doctor --save-contract``). A mapping may
name a preset first (``{"preset": "java", "tx_delay_s": 1}``): the fields are merged over it.

==================  ==========================================================================
field               effect on the simulator's answers
==================  ==========================================================================
phone_key           transactionList: ``phone``/``phones`` with ``{"phone", "ordinal"}`` objects,
                    ``phone_strings``/``phones_strings`` with plain strings, ``none``: no key
numbering           a refused record is named ``record 3:`` (zero), ``record 4:`` (one),
                    ``phone 2125551234:`` (phone) or not at all (none: ``invalid record:``)
refusal_status      status of an Append refused because of the campaign (default 409)
rate_limit_status   status past the rolling-window limit (default 429)
built_word          the word search/details answer for a Built (READY) campaign; the search
                    filter takes this word (and no longer ``READY`` if it differs)
tx_visibility       appended records in transactionList: immediate, after ``tx_delay_s``
                    seconds (delayed) or never (only the campaign's initial records show)
unknown_fields      a record field outside LiveVox's list: 400 naming the record, or dropped
malformed_campaign  one malformed entry (non-numeric id, null status/type) on every search page
unversioned_only    ``/session/v6.0/login`` and the other versioned paths answer 404
==================  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

#: The values each text or status field may take.
CHOICES: dict[str, tuple[Any, ...]] = {
    "phone_key": ("phone", "phones", "phone_strings", "phones_strings", "none"),
    "numbering": ("zero", "one", "phone", "none"),
    "refusal_status": (409, 400, 403, 404),
    "rate_limit_status": (429, 403, 409, 503),
    "built_word": ("READY", "ACTIVE", "PREBUILT"),
    "tx_visibility": ("immediate", "delayed", "never"),
    "unknown_fields": ("refuse", "drop"),
}
#: The internal word of a Built campaign (the simulator's Status.READY).
BUILT = "READY"


@dataclass(frozen=True)
class Dialect:
    phone_key: str = "phone"
    numbering: str = "zero"
    refusal_status: int = 409
    rate_limit_status: int = 429
    built_word: str = "READY"
    tx_visibility: str = "immediate"
    tx_delay_s: float = 0.0
    unknown_fields: str = "refuse"
    malformed_campaign: bool = False
    unversioned_only: bool = False

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                values = ", ".join(str(v) for v in allowed)
                raise ValueError(f"dialect {name} must be one of {values}")
        if self.tx_delay_s < 0:
            raise ValueError("dialect tx_delay_s must be >= 0")

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    # --- search and details -----------------------------------------------------------------

    def word(self, status: str) -> str:
        """The status word answered for an internal status."""
        return self.built_word if status == BUILT else status

    def internal(self, word: str) -> str | None:
        """The internal status a search filter word means, or None if this dialect has no such
        word (``READY`` where Built is called something else)."""
        word = word.upper()
        if word == self.built_word:
            return BUILT
        return None if word == BUILT else word

    # --- append -----------------------------------------------------------------------------

    def record_label(self, index: int, record: Any) -> str:
        """How a refusal message names the ``index``-th (0-based) record of a batch."""
        if self.numbering == "zero":
            return f"record {index}: "
        if self.numbering == "one":
            return f"record {index + 1}: "
        if self.numbering == "phone":
            phone1 = record.get("phone1") if isinstance(record, dict) else None
            return f"phone {phone1 if phone1 is not None else '(none)'}: "
        return "invalid record: "

    # --- transactionList --------------------------------------------------------------------

    def phones_json(self, phones: list[str]) -> dict[str, Any]:
        """The phone part of a transactionList entry."""
        if self.phone_key == "none":
            return {}
        key = "phones" if self.phone_key.startswith("phones") else "phone"
        if self.phone_key.endswith("_strings"):
            return {key: list(phones)}
        return {key: [{"phone": p, "ordinal": i} for i, p in enumerate(phones, start=1)]}

    def visible_after_s(self) -> float | None:
        """Seconds after its Append before an appended record shows (None: never)."""
        if self.tx_visibility == "never":
            return None
        return self.tx_delay_s if self.tx_visibility == "delayed" else 0.0


DEFAULT = Dialect()

DIALECTS: dict[str, Dialect] = {
    "default": DEFAULT,
    # LiveVox's own Java client: phones under "phones", READY for Built.
    "java": Dialect(phone_key="phones", numbering="one", refusal_status=400, built_word="READY"),
    # The public .NET client: "phone" objects, ACTIVE for Built.
    "dotnet": Dialect(refusal_status=404, built_word="ACTIVE", rate_limit_status=503),
    "quiet": Dialect(
        numbering="none",
        refusal_status=400,
        tx_visibility="delayed",
        tx_delay_s=5.0,
        unknown_fields="drop",
    ),
    "unreadable": Dialect(phone_key="none"),
    # Every remaining value at least once, so that a chaos run visits each.
    "strict": Dialect(
        phone_key="phone_strings",
        numbering="phone",
        refusal_status=403,
        rate_limit_status=409,
        built_word="PREBUILT",
        malformed_campaign=True,
    ),
    "legacy": Dialect(
        phone_key="phones_strings",
        rate_limit_status=403,
        tx_visibility="never",
        unversioned_only=True,
    ),
}


def parse_dialect(data: Any, base: Dialect = DEFAULT) -> Dialect:
    """``data`` (a mapping of fields, optionally with ``preset`` first; or a preset name) merged
    over ``base``; ValueError naming the bad field."""
    if data is None:
        return base
    if isinstance(data, Dialect):
        return data
    if isinstance(data, str):
        return preset(data)
    if not isinstance(data, Mapping):
        raise ValueError("dialect must be a JSON object of fields or a preset name")
    names = {f.name: f.type for f in fields(Dialect)}
    unknown = set(data) - set(names) - {"preset"}
    if unknown:
        raise ValueError(f"unknown dialect fields: {', '.join(sorted(unknown))}")
    if "preset" in data:
        base = preset(data["preset"])
    changes = {k: _typed(k, v, str(names[k])) for k, v in data.items() if k != "preset"}
    return replace(base, **changes)


def preset(name: Any) -> Dialect:
    if not isinstance(name, str) or name not in DIALECTS:
        raise ValueError(f"unknown dialect preset {name!r} (one of {', '.join(DIALECTS)})")
    return DIALECTS[name]


def parse_dialect_option(text: str, base: Dialect = DEFAULT) -> Dialect:
    """``--dialect``: ``phone_key=phones,numbering=one`` or a preset name, optionally first
    (``java,tx_delay_s=2``); values are read as JSON where they parse, else as text."""
    data: dict[str, Any] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if "=" not in part:
            if data:
                raise ValueError(f"dialect preset {part!r} must come first")
            data["preset"] = part
            continue
        key, _, value = part.partition("=")
        data[key.strip()] = _option_value(value.strip())
    return parse_dialect(data, base)


def dialect_from_contract(contract: Any) -> Dialect:
    """The dialect a contract snapshot (``appendq doctor --save-contract``) describes: its
    ``dialect`` object, merged over the defaults (corners a read-only probe cannot see keep
    their defaults)."""
    if not isinstance(contract, Mapping) or not isinstance(contract.get("dialect"), Mapping):
        raise ValueError('a contract snapshot must be a JSON object with a "dialect" object')
    return parse_dialect(contract["dialect"])


def _option_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _typed(name: str, value: Any, kind: str) -> Any:
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"dialect {name} must be true or false")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"dialect {name} must be a number")
        return float(value)
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"dialect {name} must be an integer")
        return value
    if not isinstance(value, str):
        raise ValueError(f"dialect {name} must be text")
    return value.upper() if name == "built_word" else value
