"""Retry policy: pure functions, no clock and no randomness of their own."""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff_s(
    attempt: int, *, base_s: float, cap_s: float, rand: Callable[[], float] = random.random
) -> float:
    """Capped exponential backoff with full jitter: uniform in [base, min(cap, base * 2**(n-1))].

    ``attempt`` counts from 1 (the first failure). Never less than ``base_s``, so that a retry never
    comes sooner than one drain interval would bring it anyway.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    ceiling = min(cap_s, base_s * 2 ** min(attempt - 1, 32))
    return float(base_s + (max(ceiling, base_s) - base_s) * rand())


def should_give_up(attempts: int, max_attempts: int) -> bool:
    return attempts >= max_attempts
