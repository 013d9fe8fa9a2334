"""Reward of policy generations over 60 simulated days, retrained and promoted daily, with and without mitigations.

What is measured
    The Adyen paper (arXiv 2412.00569) warns that a generation trained on its predecessor's logs can do
    worse, and that performance can oscillate across generations. Here the simulated payment world (no drift)
    is served by generation 0 (uniform) for one period (default: one day); at the end of every period a new
    generation is retrained on the matured log and promoted, so 60 days give generations 0..59 (``--period-days
    10`` gives 0..5). Each generation's reward is its *expected* authorisation rate on the traffic it served,
    from the world's truth: per transaction ``e = sum_a p(a|x) P(auth | x, a)`` with the probabilities the
    decision logged (no outcome noise), next to uniform random ``u`` and the best action on the same
    transactions. Its ``lift`` is the mean of ``e - u``, which removes most of the day-to-day change in the
    traffic's composition (weekdays, hours, countries).

    Configurations:

    * ``short memory``: the Adyen setting. Each generation learns only from the last period, which the
      deployed generation alone logged; floor 0.01; no importance weighting; no trust region.
    * ``mitigated``: logs of every generation in the last 30 days pooled (each row with its own propensity),
      importance weights clipped at 20, floor 0.05, trust region 0.1 (mean total-variation distance to the
      deployed generation on the last 1,000 matured decisions; ``banditgate retrain --trust-region``).
    * ``mitigated, no trust region`` (``--ablation``): the same without the trust region.

    All use SquareCB with gamma 1000 (the trust region may lower it per generation). Authorisation rates of
    the eligible actions differ by a few points, so with gamma 100 a non-best action keeps about
    ``1 / (K + 100 * 0.02)`` of the mass: generations stay close to uniform, log nearly the same data, and
    the feedback loop behind the oscillation effect hardly exists (``--gamma 100`` runs that setting).

Oscillation
    Over all generations, :func:`banditgate.pipelines.health.oscillation` is applied to the expected reward
    and to the lift (standard errors over the transactions served): ``significant`` changes between
    consecutive generations are those left after Holm's correction (at 2.5%), ``alternations`` counts
    consecutive pairs of them with opposite signs, and the flag fires on two or more alternating in a row or
    on a significant decline of the series (least-squares slope, one-sided, 2.5%). Alternating changes alone
    do not make an Adyen oscillation: for independent, equally good generations two consecutive changes have
    opposite signs 2/3 of the time. The systematic effect (a good generation logs skewed data, the next one
    learns worse from it, and so on) would show as a negative lag-1 autocorrelation of the lift across
    generations, reported with its 95% band ``+-1.96 / sqrt(n)`` for independent generations. Health's own
    flag (``banditgate health``: the same tests on each generation's realised reward minus a common
    model's estimate of uniform random on the same decisions, no access to the truth) is reported too.
    Decisions are made by the real Decider and logged to a SQLite ledger; retraining (LightGBM on one
    thread), promotion and health are the production code paths.

Run: ``python benchmarks/generations_experiment.py [--per-day N] [--period-days P] [--gamma G] [--ablation]``
(defaults: 1,500 decisions a day, daily, gamma 1000; about 15 minutes on one core with ``--ablation``, 5 with
``--period-days 10``); results in benchmarks/results/generations_experiment.json (daily) or
generations_experiment_<P>d.json.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger import registry
from banditgate.ledger.db import make_engine, make_sessionmaker
from banditgate.ledger.migrate import upgrade
from banditgate.ledger.models import Decision
from banditgate.ledger.promotion import promote
from banditgate.pipelines.health import Z95, generation_health, oscillation
from banditgate.pipelines.retrain import RetrainOptions, retrain
from banditgate.simulator import PaymentWorld

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.workload import environment, table, write_results
from tests.support.ledger_fill import fill

SHOWN = 6  # generations 0..5 in the first table
TRUST_REGION = 0.1


def configurations(period_days: int, ablation: bool) -> dict[str, dict[str, Any]]:
    """Floor and retraining options of each configuration; short memory remembers one period."""
    mitigations = {"window": timedelta(days=30), "pool_generations": True, "importance_weighting": True}
    result = {
        "short memory": {"floor": 0.01, "options": {"window": timedelta(days=period_days), "pool_generations": False}},
        "mitigated": {"floor": 0.05, "options": {**mitigations, "trust_region": TRUST_REGION}},
    }
    if ablation:
        result["mitigated, no trust region"] = {"floor": 0.05, "options": mitigations}
    return result


def replay(
    sessions: sessionmaker[Session],
    world: PaymentWorld,
    start: datetime,
    days: int,
    per_day: int,
    seed: int,
    prefix: str,
) -> dict[str, np.ndarray]:
    """Per transaction a generation served, the true expected authorisation under the probabilities its decision
    logged, under uniform random and under the best eligible action (the same traffic regenerated from its seed).
    """
    with sessions() as session:
        logged = {
            decision_id: (actions, probabilities)
            for decision_id, actions, probabilities in session.execute(
                select(Decision.decision_id, Decision.actions, Decision.probabilities).where(
                    Decision.decision_id.startswith(prefix)
                )
            )
        }
    expected, uniform, best = [], [], []
    for batch in world.traffic_batches(start, days, per_day, seed, prefix):
        matrix = np.zeros_like(batch.p_authorisation)
        for row, decision_id in enumerate(batch.ids):
            actions, probabilities = logged[decision_id]
            for action, p in zip(actions, probabilities, strict=True):
                matrix[row, batch.catalogue.position(action["id"])] = p
        expected.append(batch.expected_reward(matrix))
        uniform.append(batch.expected_reward(batch.eligible / batch.eligible.sum(axis=1, keepdims=True)))
        best.append(batch.p_authorisation[np.arange(len(batch)), batch.best_actions()])
    return {"expected": np.concatenate(expected), "uniform": np.concatenate(uniform), "best": np.concatenate(best)}


def standard_error(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / math.sqrt(len(values)))


def run(
    name: str, config: dict[str, Any], days: int, per_day: int, period_days: int, gamma: float, seed: int
) -> dict[str, Any]:
    world = PaymentWorld("none", seed=seed)
    folder = Path(tempfile.mkdtemp(prefix="bg-generations-"))
    artifacts = folder / "artifacts"
    engine = make_engine(f"sqlite:///{folder / 'ledger.db'}", sqlite_synchronous="NORMAL")
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    spec = registry.PolicySpec(exploration="squarecb", exploration_params={"gamma": gamma}, floor=config["floor"])
    with sessions() as session, session.begin():
        registry.put_policy(session, "default", spec, actor="experiment")
    started = time.perf_counter()
    generations: list[dict[str, Any]] = []
    retrained: dict[str, Any] = {}
    for number in range(days // period_days):
        start = world.epoch + timedelta(days=number * period_days)
        prefix, traffic_seed = f"g{number}-", seed * 1000 + number
        served = fill(
            sessions, artifacts, world, start=start, days=period_days, per_day=per_day, seed=traffic_seed, prefix=prefix
        )
        truth = replay(sessions, world, start, period_days, per_day, traffic_seed, prefix)
        assert abs(truth["expected"].mean() - served["expected_reward"]) < 1e-9  # the replay is the served traffic
        lift = truth["expected"] - truth["uniform"]
        generations.append(
            {
                "generation": number,
                "decisions": served["decisions"],
                "expected_reward": served["expected_reward"],
                "standard_error": standard_error(truth["expected"]),
                "lift": float(lift.mean()),
                "lift_standard_error": standard_error(lift),
                "uniform_reward": served["uniform_reward"],
                "best_reward": served["best_reward"],
                **retrained,
            }
        )
        print(
            f"  {name}: generation {number} expected reward {served['expected_reward']:.4f} "
            f"(lift {lift.mean():+.4f}, {time.perf_counter() - started:.0f} s)",
            flush=True,
        )
        if number + 1 == days // period_days:
            break
        options = RetrainOptions(
            as_of=start + timedelta(days=period_days), oracle_overrides={"num_threads": 1}, **config["options"]
        )
        candidate = retrain(sessions, artifacts, "default", options).generation
        retrained = {
            "gamma": candidate.exploration_params.get("gamma", gamma),
            "training_rows": candidate.row_counts["training"],
            "trust_region": candidate.row_counts.get("trust_region"),
        }
        with sessions() as session, session.begin():
            promote(session, "default", candidate.number, actor="experiment", reason="scheduled promotion")
    health = generation_health(
        sessions, artifacts, "default", as_of=world.epoch + timedelta(days=days), window=timedelta(days=days + 1)
    )
    engine.dispose()
    return {
        "seconds": time.perf_counter() - started,
        "generations": generations,
        "summary": summarise(generations, health["oscillation"]),
    }


def alternations(report: dict[str, Any]) -> int:
    """Consecutive pairs of significant changes with opposite signs."""
    signs = [(1 if c["change"] > 0 else -1) if c["significant"] else 0 for c in report["changes"]]
    return sum(1 for a, b in pairwise(signs) if a * b < 0)


def summarise(generations: list[dict[str, Any]], health: dict[str, Any]) -> dict[str, Any]:
    """Mean, min and max over the learned generations (1..), and the oscillation statistics over all of them."""
    numbers = [g["generation"] for g in generations]
    result: dict[str, Any] = {}
    for key, error in (("expected_reward", "standard_error"), ("lift", "lift_standard_error")):
        learned = np.array([g[key] for g in generations[1:]])
        report = oscillation(numbers, [g[key] for g in generations], [g[error] for g in generations]).as_dict()
        result[key] = {
            "mean": float(learned.mean()),
            "min": float(learned.min()),
            "max": float(learned.max()),
            "significant_changes": sum(c["significant"] for c in report["changes"]),
            "alternations": alternations(report),
            "oscillation_flagged": report["flagged"],
            "longest_alternating_run": report["longest_run"],
        }
    lift = np.array([g["lift"] for g in generations[1:]])
    result["lift"]["lag1_autocorrelation"] = float(np.corrcoef(lift[:-1], lift[1:])[0, 1])
    result["lift"]["autocorrelation_band"] = Z95 / math.sqrt(len(lift))
    result["health"] = {
        "oscillation_flagged": health["flagged"],
        "longest_alternating_run": health["longest_run"],
        "significant_changes": sum(c["significant"] for c in health["changes"]),
        "alternations": alternations(health),
    }
    regions = [g["trust_region"] for g in generations if g.get("trust_region")]
    if regions:
        result["trust_region"] = {
            "cap": regions[0]["cap"],
            "generations": len(regions),
            "binding": sum(r["tv_before"] > r["cap"] for r in regions),
            "not_met": sum(not r["met"] for r in regions),
            "mean_tv_after": float(np.mean([r["tv_after"] for r in regions])),
            "mean_gamma": float(np.mean([r["gamma"] for r in regions])),
        }
    return result


def flag(statistics: dict[str, Any]) -> str:
    """``alternations/significant changes`` and whether the oscillation flag fires."""
    fired = "yes" if statistics["oscillation_flagged"] else "no"
    return f"{statistics['alternations']}/{statistics['significant_changes']} {fired}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=60, help="simulated days")
    parser.add_argument("--per-day", type=int, default=1500, help="decisions per simulated day")
    parser.add_argument("--period-days", type=int, default=1, help="days between retrainings (divides --days)")
    parser.add_argument("--gamma", type=float, default=1000.0, help="SquareCB's gamma (the policy's)")
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--ablation", action="store_true", help="also run the mitigations without the trust region")
    args = parser.parse_args()
    if args.days % args.period_days or args.days < 4 * args.period_days:
        parser.error("--period-days must divide --days, with at least 4 generations")
    runs = {
        name: run(name, config, args.days, args.per_day, args.period_days, args.gamma, args.seed)
        for name, config in configurations(args.period_days, args.ablation).items()
    }
    names = list(runs)
    first = runs[names[0]]["generations"]
    rows = [
        [
            g,
            *(f"{runs[n]['generations'][g]['expected_reward']:.4f}" for n in names),
            f"{first[g]['uniform_reward']:.4f}",
            f"{first[g]['best_reward']:.4f}",
        ]
        for g in range(min(SHOWN, len(first)))
    ]
    summary_rows = []
    for n in names:
        s = runs[n]["summary"]
        reward, lift, health = s["expected_reward"], s["lift"], s["health"]
        summary_rows.append(
            [
                n,
                f"{reward['mean']:.4f} [{reward['min']:.4f}, {reward['max']:.4f}]",
                f"{lift['mean']:+.4f} [{lift['min']:+.4f}, {lift['max']:+.4f}]",
                flag(reward),
                flag(lift),
                f"{lift['lag1_autocorrelation']:+.2f} (+-{lift['autocorrelation_band']:.2f})",
                flag(health),
                f"{runs[n]['seconds']:.0f}",
            ]
        )
    name = "generations_experiment" if args.period_days == 1 else f"generations_experiment_{args.period_days}d"
    write_results(
        name,
        {
            "benchmark": "generations_experiment",
            **environment(),
            "days": args.days,
            "per_day": args.per_day,
            "period_days": args.period_days,
            "gamma": args.gamma,
            "seed": args.seed,
            "configurations": {
                n: {"floor": c["floor"], **{k: str(v) for k, v in c["options"].items()}}
                for n, c in configurations(args.period_days, args.ablation).items()
            },
            "runs": runs,
        },
    )
    print(table(["generation", *names, "uniform", "best action"], rows))
    for n in names:
        regions = [(g["generation"], g["trust_region"]) for g in runs[n]["generations"][1:SHOWN] if g["trust_region"]]
        if regions:
            print(f"\n{n}: trust region {TRUST_REGION} (mean TV to the deployed generation on recent decisions)")
            print(
                table(
                    ["generation", "TV at gamma " + format(args.gamma, "g"), "gamma", "TV", "cap met"],
                    [
                        [g, f"{r['tv_before']:.4f}", f"{r['gamma']:.1f}", f"{r['tv_after']:.4f}", r["met"]]
                        for g, r in regions
                    ],
                )
            )
    print()
    print(
        table(
            [
                "configuration",
                f"reward, gen. 1..{len(first) - 1}: mean [min, max]",
                "lift over uniform",
                "reward: alt./signif. flag",
                "lift: alt./signif. flag",
                "lift lag-1 autocorr.",
                "health: alt./signif. flag",
                "seconds",
            ],
            summary_rows,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
