from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare

from banditgate.policies.exploration import EpsilonGreedy, SquareCB
from banditgate.policies.sampling import choose, uniform_draw


def test_draw_is_a_pure_function_of_id_policy_and_generation() -> None:
    assert uniform_draw("tx-1", "default", 3) == uniform_draw("tx-1", "default", 3)
    draws = {uniform_draw("tx-1", "default", 3), uniform_draw("tx-2", "default", 3)}
    draws |= {uniform_draw("tx-1", "other", 3), uniform_draw("tx-1", "default", 4)}
    assert len(draws) == 4


def test_separator_keeps_fields_apart() -> None:
    assert uniform_draw("b\x1fc", "a", 1) != uniform_draw("c", "a\x1f1\x1fb", 1)


def test_draws_are_uniform() -> None:
    draws = np.array([uniform_draw(f"d-{i}", "p", 0) for i in range(20_000)])
    assert draws.min() >= 0.0 and draws.max() < 1.0
    counts, _ = np.histogram(draws, bins=20, range=(0.0, 1.0))
    assert chisquare(counts).pvalue > 0.001


@pytest.mark.parametrize(
    "probabilities",
    [
        SquareCB(gamma=50.0, floor=0.01).probabilities(np.array([0.9, 0.5, 0.7, 0.2, 0.85])),
        EpsilonGreedy(epsilon=0.3).probabilities(np.array([0.1, 0.2, 0.3])),
        np.array([0.5, 0.0, 0.25, 0.25]),
    ],
    ids=["squarecb", "epsilon-greedy", "with-zero"],
)
def test_empirical_frequencies_match_probabilities(probabilities: np.ndarray) -> None:
    """Chi-square goodness of fit over 20,000 decisions with fixed ids (a fixed seed, in effect)."""
    n = 20_000
    chosen = [choose(probabilities, uniform_draw(f"tx-{i}", "chi2", 7)) for i in range(n)]
    counts = np.bincount(chosen, minlength=probabilities.size)
    support = probabilities > 0
    assert counts[~support].sum() == 0, "an action with zero probability was chosen"
    result = chisquare(counts[support], probabilities[support] * n)
    assert result.pvalue > 0.001, (counts, probabilities * n)


def test_choose_at_the_edges() -> None:
    p = np.array([0.25, 0.25, 0.5])
    assert choose(p, 0.0) == 0
    assert choose(p, 0.25) == 1
    assert choose(p, np.nextafter(1.0, 0.0)) == 2
    assert choose(np.array([0.0, 1.0]), 0.0) == 1
