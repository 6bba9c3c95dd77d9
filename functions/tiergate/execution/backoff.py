"""Exponential backoff with full jitter (AWS Architecture Blog), honouring Retry-After."""

from __future__ import annotations

import random


def full_jitter(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Delay before retry number ``attempt`` (1-based): uniform in [0, min(cap, base * 2**(attempt-1))]."""
    r = (rng or random).random()
    return r * min(cap, base * (2 ** (attempt - 1)))


def retry_delay(attempt: int, retry_after: float | None, *, base: float, cap: float,
                rng: random.Random | None = None) -> float:
    """The provider's Retry-After is a floor: never come back sooner than it asked."""
    jitter = full_jitter(attempt, base=base, cap=cap, rng=rng)
    return max(retry_after, jitter) if retry_after is not None else jitter
