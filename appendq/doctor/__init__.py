"""``appendq doctor``: a read-only probe of the configured LiveVox for day one against a real
account. It logs in (both API path forms), validates the session, searches today's campaigns of
each service, reads one campaign's details and one page of its transactionList, and reports a
checklist (✓/✗/?) of credentials, TLS, clock, role, status words and types, malformed entries,
paging, the phone key and the answers' shapes. It never appends, never logs out, and never
prints a secret or a full phone number. ``contract`` turns what it saw into a redacted snapshot
the simulator can play (``appendq simulator --contract FILE``).

Modules: ``report`` (typed report), ``shapes`` (pure readings), ``probe`` (the HTTP calls),
``run`` (the checklist), ``contract`` (snapshots).
"""

from __future__ import annotations

from appendq.doctor.contract import contract_snapshot, observed_dialect, save_contract
from appendq.doctor.report import (
    EXIT_FAILED,
    EXIT_LOGIN_DENIED,
    EXIT_OK,
    Check,
    DoctorReport,
    Mark,
    Observed,
)
from appendq.doctor.run import run_doctor

__all__ = [
    "EXIT_FAILED",
    "EXIT_LOGIN_DENIED",
    "EXIT_OK",
    "Check",
    "DoctorReport",
    "Mark",
    "Observed",
    "contract_snapshot",
    "observed_dialect",
    "run_doctor",
    "save_contract",
]
