"""Off-policy estimators on a synthetic contextual bandit whose true policy value is known exactly.

The world
    ``K = 5`` actions (think: acquirer routes) and a pool of 200 context types (think: segments of
    issuer country x card brand x amount band), drawn once from a fixed seed, each with 4 features ``x``.
    The authorisation probability of action ``a`` in context ``x`` is ``mu(x, a) = sigmoid(x . theta_a +
    b_a)``. Per decision: a context type uniformly from the pool; a dynamic action set in which each action
    is eligible with probability 0.8, independently, conditioned on at least one being eligible (31 possible
    sets); the chosen action drawn from the logging policy; a Bernoulli(``mu``) reward.

    Logs mix two generations, each row carrying its own propensity: 30% of rows come from generation 1,
    ``Softmax(temperature=0.05, floor=0.02)`` over ``mu`` plus fixed noise of standard deviation 0.15
    (a poor model), and 70% from generation 2, ``SquareCB(gamma=50, floor=0.01)`` over ``mu`` plus fixed
    noise of standard deviation 0.08. The target is the candidate generation ``SquareCB(gamma=200)`` over
    ``mu`` plus noise of standard deviation 0.02: it concentrates on actions the logging policies often
    rank low, so the importance weights are skewed (an effective sample size near 30% of ``n``, weights up
    to about 45). The policies are banditgate's own exploration rules.

    Because contexts and action sets are finite, the target's value is an exact finite sum:
    ``V = sum_{x, S} P(x) P(S) sum_{a in S} pi(a | x, S) mu(x, a)``.

Oracles
    *well-specified*: the true ``mu`` (the limit of a correctly specified reward model trained on unlimited
    data). *misspecified*: a model that ignores the context, ``q(x, a) = E_x'[mu(x', a)]`` (the best
    context-free predictor). DM's interval accounts for the sampling of contexts only, never for the
    oracle's error, so only the well-specified oracle gives it honest coverage.

What is measured
    For each oracle, 200 seeded repetitions of ``n = 5,000`` logged decisions; per estimator: the coverage
    of the 95% normal interval (share of repetitions whose interval contains ``V``), the mean interval
    width, the bias and RMSE of the point estimate, and the mean effective sample size (of the importance
    weights; the same for all estimators on a data set). Clipped IPS and Switch-DR use the package
    defaults (``clip = tau = 20``). Both oracles see the same 200 data sets, so the estimators that do not
    use the oracle (IPS, clipped IPS, SNIPS) give the same rows in both tables. A check of the exact value:
    2,000,000 on-policy decisions simulated from the target give 0.88495 +- 0.00023 against 0.884911.

Run: ``python benchmarks/ope_coverage.py [--repetitions 200] [--rows 5000] [--seed 0]``; results go to
``benchmarks/results/ope_coverage.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from workload import environment, table, write_results

from banditgate.policies.exploration import ExplorationRule, Softmax, SquareCB
from banditgate.policies.ope import DEFAULT_CLIP, DEFAULT_TAU, ESTIMATORS, LoggedBandit, evaluate_all

NAME = "ope_coverage"
N_ACTIONS = 5
N_CONTEXTS = 200
N_FEATURES = 4
ELIGIBLE_PROBABILITY = 0.8
WORLD_SEED = 20250101
#: Logging generations: (share of rows, rule, standard deviation of the noise on its scores).
LOGGING = ((0.3, Softmax(temperature=0.05, floor=0.02), 0.15), (0.7, SquareCB(gamma=50.0, floor=0.01), 0.08))
TARGET = (SquareCB(gamma=200.0), 0.02)
CONFIDENCE = 0.95


@dataclass(frozen=True)
class World:
    """Everything about the synthetic bandit that does not change between repetitions."""

    mu: np.ndarray  # (contexts, K) authorisation probabilities
    action_sets: np.ndarray  # (sets, K) bool, every non-empty subset of the actions
    set_probabilities: np.ndarray  # (sets,)
    logging: tuple[np.ndarray, ...]  # per generation: (contexts, sets, K) probabilities
    generation_shares: np.ndarray  # (generations,)
    target: np.ndarray  # (contexts, sets, K)
    true_value: float

    def oracle(self, kind: str) -> np.ndarray:
        """Predictions for every (context, action): the truth, or the best context-free model."""
        if kind == "well-specified":
            return self.mu
        return np.broadcast_to(self.mu.mean(axis=0), self.mu.shape)


def policy_tables(rule: ExplorationRule, scores: np.ndarray, action_sets: np.ndarray) -> np.ndarray:
    """``rule``'s probabilities for every context and action set, zero on ineligible actions."""
    table_ = np.zeros((scores.shape[0], action_sets.shape[0], scores.shape[1]))
    for c, s in itertools.product(range(scores.shape[0]), range(action_sets.shape[0])):
        eligible = action_sets[s]
        table_[c, s, eligible] = rule.probabilities(scores[c, eligible])
    return table_


def make_world() -> World:
    rng = np.random.default_rng(WORLD_SEED)
    features = rng.normal(size=(N_CONTEXTS, N_FEATURES))
    theta = rng.normal(scale=0.8, size=(N_ACTIONS, N_FEATURES))
    bias = rng.normal(loc=1.0, scale=0.5, size=N_ACTIONS)
    mu = 1.0 / (1.0 + np.exp(-(features @ theta.T + bias)))

    action_sets = np.array([s for s in itertools.product([False, True], repeat=N_ACTIONS) if any(s)])
    sizes = action_sets.sum(axis=1)
    set_probabilities = ELIGIBLE_PROBABILITY**sizes * (1.0 - ELIGIBLE_PROBABILITY) ** (N_ACTIONS - sizes)
    set_probabilities /= set_probabilities.sum()  # conditioning on a non-empty set

    logging = tuple(
        policy_tables(rule, mu + rng.normal(scale=noise, size=mu.shape), action_sets) for _, rule, noise in LOGGING
    )
    rule, noise = TARGET
    target = policy_tables(rule, mu + rng.normal(scale=noise, size=mu.shape), action_sets)
    per_context_and_set = np.einsum("csk,ck->cs", target, mu)
    true_value = float(per_context_and_set.mean(axis=0) @ set_probabilities)
    return World(
        mu=mu,
        action_sets=action_sets,
        set_probabilities=set_probabilities,
        logging=logging,
        generation_shares=np.array([share for share, _, _ in LOGGING]),
        target=target,
        true_value=true_value,
    )


def log_decisions(world: World, n: int, oracle: str, rng: np.random.Generator) -> LoggedBandit:
    """``n`` logged decisions from the mixed logging generations, as the estimators read them."""
    contexts = rng.integers(N_CONTEXTS, size=n)
    sets = rng.choice(world.set_probabilities.size, size=n, p=world.set_probabilities)
    generations = rng.choice(world.generation_shares.size, size=n, p=world.generation_shares)
    logging = np.stack(world.logging)[generations, contexts, sets]
    actions = (logging.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    rows = np.arange(n)
    rewards = (rng.random(n) < world.mu[contexts, actions]).astype(np.float64)
    return LoggedBandit(
        rewards=rewards,
        actions=actions,
        propensities=logging[rows, actions],
        target=world.target[contexts, sets],
        oracle=world.oracle(oracle)[contexts],
        eligible=world.action_sets[sets],
    )


def run(world: World, oracle: str, repetitions: int, n: int, seed: int) -> dict[str, dict[str, float]]:
    """Per estimator: coverage, mean interval width, bias, RMSE and mean ESS over the repetitions."""
    names = list(ESTIMATORS)
    values = np.empty((repetitions, len(names)))
    lows = np.empty_like(values)
    highs = np.empty_like(values)
    ess = np.empty(repetitions)
    for r in range(repetitions):
        data = log_decisions(world, n, oracle, np.random.default_rng([seed, r]))
        estimates = evaluate_all(data, confidence=CONFIDENCE)
        for j, name in enumerate(names):
            values[r, j], lows[r, j], highs[r, j] = estimates[name].value, *estimates[name].ci
        ess[r] = data.diagnostics.ess
    errors = values - world.true_value
    covered = (lows <= world.true_value) & (world.true_value <= highs)
    return {
        name: {
            "coverage": float(covered[:, j].mean()),
            "mean_ci_width": float((highs[:, j] - lows[:, j]).mean()),
            "bias": float(errors[:, j].mean()),
            "rmse": float(np.sqrt((errors[:, j] ** 2).mean())),
            "mean_ess": float(ess.mean()),
        }
        for j, name in enumerate(names)
    }


def weight_profile(world: World, n: int, seed: int) -> dict[str, float]:
    """Importance-weight diagnostics of one data set, to show how skewed the logging is."""
    return dataclasses.asdict(log_decisions(world, n, "well-specified", np.random.default_rng([seed, 0])).diagnostics)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=200)
    parser.add_argument("--rows", type=int, default=5_000, help="logged decisions per repetition")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    world = make_world()
    profile = weight_profile(world, args.rows, args.seed)
    print(f"true value of the target policy: {world.true_value:.6f}")
    print(
        f"weights of one data set of {args.rows:,} rows: ESS {profile['ess']:,.0f}, max {profile['max_weight']:.1f}, "
        f"top 1% of rows carry {profile['top_share']:.0%} of the weight, Hill tail index "
        f"{profile['tail_index']:.2f}"
    )
    results: dict[str, Any] = {}
    headers = ["estimator", "coverage %", "mean CI width", "bias", "RMSE", "mean ESS"]
    for oracle in ("well-specified", "misspecified"):
        results[oracle] = run(world, oracle, args.repetitions, args.rows, args.seed)
        rows = [
            [
                name,
                f"{m['coverage']:.1%}".rstrip("%"),
                f"{m['mean_ci_width']:.4f}",
                f"{m['bias']:+.4f}",
                f"{m['rmse']:.4f}",
                f"{m['mean_ess']:,.0f}",
            ]
            for name, m in results[oracle].items()
        ]
        print(f"\n{oracle} oracle, {args.repetitions} repetitions of {args.rows:,} rows, {CONFIDENCE:.0%} intervals")
        print(table(headers, rows))
    elapsed = time.perf_counter() - started
    print(f"\n{elapsed:.1f} s")

    output = {
        "benchmark": NAME,
        **environment(),
        "setup": {
            "repetitions": args.repetitions,
            "rows": args.rows,
            "seed": args.seed,
            "world_seed": WORLD_SEED,
            "actions": N_ACTIONS,
            "contexts": N_CONTEXTS,
            "eligible_probability": ELIGIBLE_PROBABILITY,
            "logging": [
                {"share": share, "rule": rule.name, "params": rule.params(), "score_noise_sd": noise}
                for share, rule, noise in LOGGING
            ],
            "target": {"rule": TARGET[0].name, "params": TARGET[0].params(), "score_noise_sd": TARGET[1]},
            "confidence": CONFIDENCE,
            "ci": "normal",
            "clip": DEFAULT_CLIP,
            "tau": DEFAULT_TAU,
            "true_value": world.true_value,
            "elapsed_s": round(elapsed, 2),
        },
        "weights_of_one_data_set": profile,
        "results": results,
    }
    path = write_results(NAME, output)
    print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
