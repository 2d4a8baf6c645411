"""How long to pause after failures in a row: the one exponential back-off of immortus."""

from __future__ import annotations

__all__ = ["backoff"]


def backoff(first: float, failures: int, longest: float) -> float:
    """Seconds to pause after ``failures`` failures in a row.

    ``first`` with no failure, then twice as long after each one, never over ``longest``.
    """
    if failures <= 0:
        return first
    return min(longest, first * 2.0 ** min(failures, 64))
