"""Reward of policy generations 0..5 over 60 simulated days, with and without mitigations (DESIGN.md section 1).

What is measured
    The Adyen paper warns that a generation trained on its predecessor's logs can do worse, and that
    performance can oscillate across generations. Here the simulated payment world (no drift) is served by
    generation 0 (uniform) for 10 days; then every 10 days a new generation is retrained on the matured log
    and promoted, up to generation 5. Each generation's reward is its *expected* authorisation rate on the
    traffic it served, from the world's truth (no sampling noise), next to uniform random and the best
    action on the same transactions.

    Two configurations:

    * ``short memory``: the Adyen setting. Each generation learns only from the last 10 days, which the
      deployed generation alone logged; floor 0.01; no importance weighting.
    * ``mitigated``: logs of every generation in the last 30 days pooled (each row with its own propensity),
      importance weights clipped at 20, floor 0.05.

    An oscillation is flagged when the change in reward between consecutive generations alternates sign
    twice in a row. Decisions are made by the real Decider and logged to a SQLite ledger; retraining,
    evaluation and promotion are the production code paths.

Run: ``python benchmarks/generations_experiment.py [--per-day N]``; results in
benchmarks/results/generations_experiment.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

from banditgate.ledger import registry
from banditgate.ledger.db import make_engine, make_sessionmaker
from banditgate.ledger.migrate import upgrade
from banditgate.ledger.promotion import promote
from banditgate.pipelines.retrain import RetrainOptions, retrain
from banditgate.simulator import PaymentWorld

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.workload import environment, table, write_results
from tests.support.ledger_fill import fill

PERIOD_DAYS = 10
GENERATIONS = 6

CONFIGURATIONS = {
    "short memory": {"floor": 0.01, "options": {"window": timedelta(days=10), "pool_generations": False}},
    "mitigated": {
        "floor": 0.05,
        "options": {"window": timedelta(days=30), "pool_generations": True, "importance_weighting": True},
    },
}


def run(name: str, per_day: int, seed: int) -> list[dict[str, float]]:
    config = CONFIGURATIONS[name]
    world = PaymentWorld("none", seed=seed)
    folder = Path(tempfile.mkdtemp(prefix="bg-generations-"))
    engine = make_engine(f"sqlite:///{folder / 'ledger.db'}", sqlite_synchronous="NORMAL")
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    spec = registry.PolicySpec(exploration="squarecb", exploration_params={"gamma": 100.0}, floor=config["floor"])
    with sessions() as session, session.begin():
        registry.put_policy(session, "default", spec, actor="experiment")
    results = []
    for generation in range(GENERATIONS):
        start = world.epoch + timedelta(days=generation * PERIOD_DAYS)
        served = fill(
            sessions,
            folder / "artifacts",
            world,
            start=start,
            days=PERIOD_DAYS,
            per_day=per_day,
            seed=seed * 100 + generation,
            prefix=f"g{generation}-",
        )
        results.append({"generation": generation, **served})
        print(f"  {name}: generation {generation} expected reward {served['expected_reward']:.4f}", flush=True)
        if generation + 1 == GENERATIONS:
            break
        options = RetrainOptions(as_of=start + timedelta(days=PERIOD_DAYS), **config["options"])
        candidate = retrain(sessions, folder / "artifacts", "default", options).generation
        with sessions() as session, session.begin():
            promote(session, "default", candidate.number, actor="experiment", reason="scheduled promotion")
    engine.dispose()
    return results


def oscillates(rewards: list[float]) -> bool:
    # Expected rewards are exact (the world's truth), so any change is real: no interval needed here.
    changes = [b - a for a, b in pairwise(rewards)][1:]  # from generation 1 on
    return any(x * y < 0 and y * z < 0 for x, y, z in zip(changes, changes[1:], changes[2:], strict=False))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-day", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=21)
    args = parser.parse_args()
    runs = {name: run(name, args.per_day, args.seed) for name in CONFIGURATIONS}
    rows = []
    for generation in range(GENERATIONS):
        short, mitigated = runs["short memory"][generation], runs["mitigated"][generation]
        values = (short["expected_reward"], mitigated["expected_reward"], short["uniform_reward"], short["best_reward"])
        rows.append([generation, *(f"{v:.4f}" for v in values)])
    flags = {name: oscillates([r["expected_reward"] for r in results]) for name, results in runs.items()}
    write_results(
        "generations_experiment",
        {
            "benchmark": "generations_experiment",
            **environment(),
            "per_day": args.per_day,
            "period_days": PERIOD_DAYS,
            "runs": runs,
            "oscillation": flags,
        },
    )
    print(table(["generation", "short memory", "mitigated", "uniform", "best action"], rows))
    print(f"oscillation flagged: {flags}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
