"""How context keys are treated, measured: the greedy policy of the LightGBM oracle on uniformly logged data.

What is measured
    For each world seed (21, 22, 23) and drift scenario (none, covariate, concept by default), 14 days x 2,000
    decisions of the simulated payment world are logged with uniformly random actions among the eligible
    ones, each rewarded with its authorisation outcome (drawn from the world's true probability). The LightGBM
    oracle (default hyper-parameters, one thread) is trained on them with each feature treatment below, and
    its GREEDY policy (the eligible action with the highest predicted authorisation) is scored on the next 2
    days of fresh traffic with the true probabilities: its fraction of the achievable gain is
    ``sum(p_greedy - p_uniform) / sum(p_best - p_uniform)`` (0: no better than uniform, 1: the best eligible
    action every time).

    Variants:

    * ``all categories``: every string key categorical with all its categories (up to 1,000): the treatment
      before keys could be declared.
    * ``declared: bin, merchant_id excluded``: the two high-cardinality keys declared ``excluded``.
    * ``declared: bin, merchant_id hashed 64``: the two declared ``hashed`` into 64 buckets.
    * ``auto: fold < N rows``: nothing declared; string keys with more than 32 categories keep the categories
      seen in at least N training rows, the others share an "other" code (N = 200, 500, 1000, 2000; 2000 is
      the default, chosen by this experiment). The run sets ``features.MIN_CATEGORY_ROWS``.
    * ``keys with > 32 categories excluded``: every string key with more than 32 categories in the training
      frame declared ``excluded`` (an automatic exclusion rule).

    The drift presets ramp in from day 10-20 over 90 days: ``--start-day 60`` logs days 60-73 and scores days
    74-75, with the drift well under way (and still moving).

Run: ``python benchmarks/features_experiment.py [--seeds 21,22,23] [--scenarios none,covariate,concept]
[--start-day 0]`` (about 30 s per seed and scenario on one core); results in
benchmarks/results/features_experiment.json (``features_experiment_day<N>.json`` with ``--start-day N``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from banditgate.policies.oracles import features as features_module
from banditgate.policies.oracles.features import CONTEXT_PREFIX, records_to_frame
from banditgate.policies.oracles.lightgbm_oracle import LightGBMOracle
from banditgate.simulator import PaymentWorld, TrafficBatch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.workload import environment, table, write_results

HIGH_CARDINALITY_KEYS = ("bin", "merchant_id")


@contextmanager
def min_category_rows(rows: int) -> Iterator[None]:
    """Run with another cut-off of the automatic treatment (the module's constant), restored afterwards."""
    saved = features_module.MIN_CATEGORY_ROWS
    features_module.MIN_CATEGORY_ROWS = rows
    try:
        yield
    finally:
        features_module.MIN_CATEGORY_ROWS = saved


def high_cardinality_keys(frame: pd.DataFrame) -> dict[str, Any]:
    """Every string context key with more than HIGH_CARDINALITY categories in the frame, declared excluded."""
    return {
        column[len(CONTEXT_PREFIX) :]: "excluded"
        for column in frame.columns
        if column.startswith(CONTEXT_PREFIX)
        and frame[column].map(type).eq(str).any()
        and frame[column].nunique() > features_module.HIGH_CARDINALITY
    }


def declared(*treatment: str) -> Callable[[pd.DataFrame], dict[str, Any]]:
    return lambda frame: dict.fromkeys(HIGH_CARDINALITY_KEYS, *treatment) if treatment else {}


#: name -> (the declaration, from the training frame; the cut-off of the automatic treatment)
VARIANTS: dict[str, tuple[Callable[[pd.DataFrame], dict[str, Any]], int]] = {
    "all categories (before)": (declared(), 1),
    "declared: bin, merchant_id excluded": (declared("excluded"), 1),
    "declared: bin, merchant_id hashed 64": (declared("hashed"), 1),
    "auto: fold < 200 rows": (declared(), 200),
    "auto: fold < 500 rows": (declared(), 500),
    "auto: fold < 1000 rows": (declared(), 1000),
    "auto: fold < 2000 rows (the default)": (declared(), 2000),
    "keys with > 32 categories excluded": (high_cardinality_keys, 1),
}


def logged(world: PaymentWorld, seed: int, days: range, per_day: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Uniformly logged decisions of ``days`` and their authorisation outcomes."""
    rng = np.random.default_rng([seed, 7])
    contexts, actions, rewards = [], [], []
    for day in days:
        batch = world.day_batch(day=day, decisions_per_day=per_day, seed=seed)
        for i, (context, ids) in enumerate(
            zip(batch.contexts.records(), batch.catalogue.eligible_ids(batch.eligible), strict=True)
        ):
            chosen = ids[int(rng.integers(len(ids)))]
            j = batch.catalogue.position(chosen)
            contexts.append(context)
            actions.append(batch.catalogue.actions([chosen])[0])
            rewards.append(float(batch.noise[i, 0] < batch.p_authorisation[i, j]))
    return records_to_frame(contexts, actions), np.array(rewards)


def fraction_of_gain(batches: list[TrafficBatch], score: Callable[[pd.DataFrame], np.ndarray]) -> float:
    """The greedy policy's fraction of the achievable gain on fresh traffic, with the true probabilities."""
    gained = achievable = 0.0
    for batch in batches:
        contexts, actions, rows = [], [], []
        eligible = batch.catalogue.eligible_ids(batch.eligible)
        for i, (context, ids) in enumerate(zip(batch.contexts.records(), eligible, strict=True)):
            for action in batch.catalogue.actions(ids):
                contexts.append(context)
                actions.append(action)
                rows.append(i)
        scores = score(records_to_frame(contexts, actions))
        positions = np.array([batch.catalogue.position(a.id) for a in actions])
        p = batch.p_authorisation[np.array(rows), positions]
        frame = pd.DataFrame({"row": rows, "score": scores, "p": p})
        greedy = frame.loc[frame.groupby("row")["score"].idxmax(), "p"].to_numpy()
        uniform = frame.groupby("row")["p"].mean().to_numpy()
        best = frame.groupby("row")["p"].max().to_numpy()
        gained += float((greedy - uniform).sum())
        achievable += float((best - uniform).sum())
    return gained / achievable


def run(scenario: str, seed: int, start: int, days: int, per_day: int, test_days: int) -> dict[str, float]:
    world = PaymentWorld(scenario, seed=seed)
    frame, rewards = logged(world, seed, range(start, start + days), per_day)
    fresh = [
        world.day_batch(day=d, decisions_per_day=per_day, seed=seed)
        for d in range(start + days, start + days + test_days)
    ]
    out = {}
    for name, (declaration, rows) in VARIANTS.items():
        with min_category_rows(rows):
            oracle = LightGBMOracle(num_threads=1, features=declaration(frame)).fit(frame, rewards)
            out[name] = fraction_of_gain(fresh, oracle.predict_frame)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="21,22,23")
    parser.add_argument("--scenarios", default="none,covariate,concept")
    parser.add_argument("--start-day", type=int, default=0, help="first logged day (drift ramps in from day 10-20)")
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--per-day", type=int, default=2000)
    parser.add_argument("--test-days", type=int, default=2)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    scenarios = args.scenarios.split(",")
    runs: list[dict[str, Any]] = []
    for scenario in scenarios:
        for seed in seeds:
            started = time.perf_counter()
            fractions = run(scenario, seed, args.start_day, args.days, args.per_day, args.test_days)
            runs.append({"scenario": scenario, "seed": seed, "fractions": fractions})
            print(f"{scenario} seed {seed}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    names = list(VARIANTS)
    means = {n: float(np.mean([r["fractions"][n] for r in runs])) for n in names}
    headers = ["variant", *(f"{r['scenario'][:4]} {r['seed']}" for r in runs), "mean"]
    rows = [[n, *(round(r["fractions"][n], 3) for r in runs), round(means[n], 3)] for n in names]
    write_results(
        "features_experiment" if args.start_day == 0 else f"features_experiment_day{args.start_day}",
        {
            "benchmark": "features_experiment",
            **environment(),
            "start_day": args.start_day,
            "days": args.days,
            "per_day": args.per_day,
            "test_days": args.test_days,
            "variants": {n: {"min_category_rows": rows} for n, (_, rows) in VARIANTS.items()},
            "runs": runs,
            "mean": means,
            "best": max(means, key=lambda n: means[n]),
        },
    )
    print(table(headers, rows))


if __name__ == "__main__":
    main()
