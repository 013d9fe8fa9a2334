"""How a gate evaluation reads the evidence (:class:`GateOptions`), apart from the evaluation itself.

A module of its own because serving processes need the options without the evaluation: a promotion compares
the stored evaluation's options with the policy's configured ones, and :mod:`banditgate.monitoring.gate`
imports pandas, SciPy and the proxies (more than a second, holding the GIL, in a process answering decisions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from banditgate.ledger.records import DEFAULT_SEGMENT_KEYS
from banditgate.monitoring.sufficiency import SufficiencyParameters, preset

if TYPE_CHECKING:
    from banditgate.monitoring.evidence import Reading


@dataclass(frozen=True)
class GateOptions:
    """How a gate evaluation reads the evidence.

    Parameters
    ----------
    parameters
        Weights, thresholds and the reliability metric (a preset of :mod:`.sufficiency` by default).
    window_days
        Length of the current window.
    reward_kind
        The reward kind whose labels are judged (binary, 0 or 1).
    early_kind
        The early reward kind used as proxy ground truth (authorisation results arrive in seconds).
    segment_keys
        Context fields whose values form segments (with the chosen action).
    sample_size
        Decisions of each window read in full (scores, drift); the others are counted.
    scoring_size
        Decisions of the sample whose whole candidate set is scored (uncertainty, disagreement).
    seed
        Seed of the samples, so an evaluation can be reproduced.
    calendar_keys
        Context fields left out of the feature-drift tests: the hour and weekday mix of a short window differs
        from a multi-week reference's by construction, which is seasonality, not drift.
    """

    parameters: SufficiencyParameters = field(default_factory=lambda: preset("default"))
    window_days: float = 30.0
    reward_kind: str = "authorisation"
    early_kind: str = "authorisation"
    segment_keys: tuple[str, ...] = DEFAULT_SEGMENT_KEYS
    sample_size: int = 20_000
    scoring_size: int = 5_000
    seed: int = 0
    calendar_keys: tuple[str, ...] = ("hour_of_day", "day_of_week")

    def __post_init__(self) -> None:
        if not (self.window_days > 0 and math.isfinite(self.window_days)):
            raise ValueError(f"window_days must be a positive number, got {self.window_days}")
        if self.sample_size < 1 or self.scoring_size < 1:
            raise ValueError("sample_size and scoring_size must be at least 1")

    def reading(self) -> Reading:
        """What these options have an evaluation read from the ledger."""
        from banditgate.monitoring.evidence import Reading

        return Reading(
            window=timedelta(days=self.window_days),
            reward_kinds=(self.reward_kind, self.early_kind),
            segment_keys=self.segment_keys,
            sample_size=self.sample_size,
            seed=self.seed,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "parameters": self.parameters.to_dict(),
            "window_days": self.window_days,
            "reward_kind": self.reward_kind,
            "early_kind": self.early_kind,
            "segment_keys": list(self.segment_keys),
            "sample_size": self.sample_size,
            "scoring_size": self.scoring_size,
            "seed": self.seed,
            "calendar_keys": list(self.calendar_keys),
        }
