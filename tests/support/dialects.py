"""The simulator's LiveVox dialect presets (``appendq.simulator.dialect``) as scenarios see them:
what the client needs under each, and what a scenario may expect (the invariants of
``tests.support.invariants`` hold in every dialect)."""

from __future__ import annotations

from typing import Any

from appendq.simulator.dialect import DIALECTS

PRESETS: tuple[str, ...] = tuple(DIALECTS)


def client_overrides(dialect: str) -> dict[str, Any]:
    """Settings the client needs for LiveVox in ``dialect``: "" as API version where only the
    unversioned paths answer (legacy)."""
    return {"livevox_api_version": ""} if DIALECTS[dialect].unversioned_only else {}


def client_env(dialect: str) -> dict[str, str]:
    """``client_overrides`` as ``APPENDQ_*`` variables for a process."""
    return {f"APPENDQ_{k.upper()}": str(v) for k, v in client_overrides(dialect).items()}


def list_settles(dialect: str, settle_s: float = 5.0) -> bool:
    """Whether ``dialect``'s transaction list can settle a lost answer: it names phones and shows
    appended records within ``settle_s``. Where it cannot, the batch is held for an operator with
    the reason ``held_because`` says, never sent again."""
    lag = DIALECTS[dialect].visible_after_s()
    return DIALECTS[dialect].phone_key != "none" and lag is not None and lag <= settle_s


def held_because(dialect: str) -> str:
    """Words of the reason a lost answer is held with where the list cannot settle it."""
    return "no readable phone" if DIALECTS[dialect].phone_key == "none" else "does not show batch"
