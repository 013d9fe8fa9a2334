"""Choosing a generation's floor and SquareCB gamma from the evidence."""

from __future__ import annotations

import numpy as np
import pytest

from banditgate.pipelines.exploration_choice import MAX_FLOOR, choose_gamma_by_ope, evidence_floor


def uniform_logs(n: int, gap: float, seed: int = 0, k: int = 4) -> dict[str, np.ndarray]:
    """``n`` decisions logged by uniform random over ``k`` actions; action 0 is better than the others by ``gap``."""
    rng = np.random.default_rng(seed)
    chosen = rng.integers(0, k, n)
    rewards = (rng.random(n) < np.where(chosen == 0, 0.7 + gap, 0.7)).astype(float)
    return {
        "eligible": np.ones((n, k), dtype=bool),
        "rewards": rewards,
        "chosen": chosen,
        "propensities": np.full(n, 1.0 / k),
    }


def right_scores(n: int, gap: float, k: int = 4) -> np.ndarray:
    return np.tile([0.7 + gap] + [0.7] * (k - 1), (n, 1))


def test_the_evidence_floor_falls_as_decisions_accumulate_within_its_bounds() -> None:
    floors = [evidence_floor(n, 5.0, 1_000.0, minimum=0.001) for n in (100, 5_000, 20_000, 100_000, 10**7)]
    assert floors == sorted(floors, reverse=True)
    assert floors[0] == MAX_FLOOR and floors[-1] == 0.001
    assert floors[2] == pytest.approx(1_000.0 / (5.0 * 20_000))
    # Never above uniform (two actions: 1/2 > MAX_FLOOR, so MAX_FLOOR binds) nor below the policy's floor.
    assert evidence_floor(10, 25.0, 1_000.0, minimum=0.0) == pytest.approx(1.0 / 25.0)
    assert evidence_floor(10**7, 5.0, 1_000.0, minimum=0.02) == 0.02


def test_a_right_oracle_with_much_evidence_is_served_greedily() -> None:
    n = 20_000
    logs = uniform_logs(n, gap=0.2)
    gamma, table = choose_gamma_by_ope(right_scores(n, 0.2), floor=0.01, **logs)
    assert gamma == max(c.gamma for c in table)
    # The lift over uniform grows with gamma towards 0.2 * (1 - 1/4) (less the floor's share).
    lifts = [c.lift for c in table]
    assert lifts == sorted(lifts) and 0.12 < lifts[-1] < 0.16
    assert [c.off_greedy_mass for c in table] == sorted((c.off_greedy_mass for c in table), reverse=True)


def test_a_wrong_oracle_keeps_the_policy_close_to_uniform() -> None:
    n = 20_000
    logs = uniform_logs(n, gap=0.2)
    wrong = right_scores(n, 0.2)[:, ::-1].copy()  # prefers the worst actions
    gamma, table = choose_gamma_by_ope(wrong, floor=0.01, **logs)
    assert gamma == min(c.gamma for c in table)
    assert all(c.lift < 0 for c in table)


def test_gamma_grows_with_the_evidence() -> None:
    """A small true gap: a few hundred decisions rarely show greedy is better, tens of thousands nearly always."""

    def mean_log_gamma(n: int) -> float:
        chosen = [
            choose_gamma_by_ope(right_scores(n, 0.03), floor=0.01, **uniform_logs(n, gap=0.03, seed=seed))[0]
            for seed in range(10)
        ]
        return float(np.mean(np.log10(chosen)))

    small, large = mean_log_gamma(300), mean_log_gamma(20_000)
    assert large > small + 1.0 and large > 4.0


def test_candidates_below_the_ess_floor_are_not_chosen() -> None:
    n = 2_000
    logs = uniform_logs(n, gap=0.2)
    _, free = choose_gamma_by_ope(right_scores(n, 0.2), floor=0.0, **logs)
    min_ess = np.median([c.ess for c in free])
    gamma, table = choose_gamma_by_ope(right_scores(n, 0.2), floor=0.0, min_ess=min_ess, **logs)
    assert [c.admissible for c in table] == [c.ess >= min_ess for c in free]
    assert not table[-1].admissible and gamma == max(c.gamma for c in table if c.admissible)
    # When no candidate is admissible, the one with the most evidence (the least greedy) is kept.
    gamma, _ = choose_gamma_by_ope(right_scores(n, 0.2), floor=0.0, min_ess=10 * n, **logs)
    assert gamma == min(c.gamma for c in table)


def test_no_candidate_is_refused() -> None:
    logs = uniform_logs(10, gap=0.2)
    with pytest.raises(ValueError, match="at least one candidate"):
        choose_gamma_by_ope(right_scores(10, 0.2), floor=0.0, gammas=(), **logs)


def test_the_exploration_budget_excludes_candidates_that_explore_too_much() -> None:
    n = 20_000
    logs = uniform_logs(n, gap=0.2)
    wrong = right_scores(n, 0.2)[:, ::-1].copy()
    gamma, table = choose_gamma_by_ope(wrong, floor=0.01, max_exploration=0.2, **logs)
    assert [c.admissible for c in table] == [c.off_greedy_mass <= 0.2 for c in table]
    admissible = [c for c in table if c.admissible]
    assert admissible and not all(c.admissible for c in table)
    # A wrong oracle: the least greedy candidate within the budget loses least.
    assert gamma == min(c.gamma for c in admissible)
    # No candidate within the budget: the least exploring one.
    gamma, _ = choose_gamma_by_ope(wrong, floor=0.2, max_exploration=0.01, **logs)
    assert gamma == max(c.gamma for c in table)


def test_the_lift_is_measured_against_the_reference_policy() -> None:
    n = 5_000
    logs = uniform_logs(n, gap=0.2)
    scores = right_scores(n, 0.2)
    greedy = np.zeros(scores.shape)
    greedy[:, 0] = 1.0
    _, table = choose_gamma_by_ope(scores, floor=0.0, reference=greedy, **logs)
    # The greediest candidate is nearly the reference: its lift is about 0; less greedy ones lose.
    assert abs(table[-1].lift) < 1e-3 and table[-1].lift_std_error < 0.01
    assert all(c.lift < 0 for c in table[:-2])
