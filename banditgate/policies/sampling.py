"""Reproducible sampling: the draw is a pure function of (decision_id, policy, generation)."""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate

import numpy as np

_DENOMINATOR = float(1 << 53)


def uniform_draw(decision_id: str, policy: str, generation: int) -> float:
    """A number in [0, 1) derived from the decision's identity, identical on every replay.

    The top 53 bits of SHA-256 over the three fields give a uniform double with full mantissa precision.
    The unit separator keeps ``("a\\x1fb", "c")`` and ``("a", "b\\x1fc")`` apart.

    >>> uniform_draw("tx-1", "default", 0) == uniform_draw("tx-1", "default", 0)
    True
    >>> 0.0 <= uniform_draw("tx-1", "default", 1) < 1.0
    True
    """
    key = f"{policy}\x1f{generation}\x1f{decision_id}".encode()
    top = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") >> 11
    return top / _DENOMINATOR


def choose(probabilities: Sequence[float] | np.ndarray, u: float) -> int:
    """Index of the action the draw ``u`` selects by inverse-CDF sampling.

    The draw is scaled by the cumulative total rather than assumed against 1.0, and ``bisect_right``
    finds the first cumulative sum strictly above it, so an action with zero probability (whose
    cumulative sum equals its predecessor's) is never chosen.

    >>> choose(np.array([0.2, 0.0, 0.8]), 0.1), choose(np.array([0.2, 0.0, 0.8]), 0.2)
    (0, 2)
    """
    # Plain floats: for ten actions numpy's call overhead costs more than the sums. accumulate adds in the same
    # order as np.cumsum, so replays of decisions logged by either agree to the bit.
    values = probabilities.tolist() if isinstance(probabilities, np.ndarray) else probabilities
    cumulative = list(accumulate(values))
    return bisect_right(cumulative, u * cumulative[-1])
