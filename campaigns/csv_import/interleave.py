"""The weighted round-robin that spreads a campaign's templates evenly through its queue."""

from __future__ import annotations

from collections.abc import Sequence
from math import gcd


def interleave_pattern(weights: Sequence[int]) -> list[int]:
    """One period of smooth weighted round-robin: indexes into `weights`, spread evenly.

    Equal weights give 0,1,2,0,1,2…; (5,1,1) gives 0,0,1,0,2,0,0 (nginx's algorithm), so a
    template never runs in a block. The period is sum(weights) / gcd(weights).
    """
    if not weights or any(w < 1 for w in weights):
        raise ValueError("every template weight must be a whole number of at least 1")
    divisor = 0
    for w in weights:
        divisor = gcd(divisor, w)
    reduced = [w // divisor for w in weights]
    total = sum(reduced)
    current = [0] * len(reduced)
    pattern: list[int] = []
    for _ in range(total):
        for i, w in enumerate(reduced):
            current[i] += w
        best = max(range(len(reduced)), key=lambda i: current[i])
        current[best] -= total
        pattern.append(best)
    return pattern
