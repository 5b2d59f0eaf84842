"""Small statistics shared by collection, evaluation and reports (plain Python, no torch)."""

from __future__ import annotations

import math


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a success rate (95% for the default ``z``).

    Used instead of the normal approximation because success rates of experts and policies sit
    near 0 or 1, where ``p ± z·sqrt(p(1-p)/n)`` collapses to zero width or leaves [0, 1].
    With no trials nothing is known, so the interval is the whole of [0, 1].
    """
    if trials < 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    return max(0.0, centre - half), min(1.0, centre + half)
