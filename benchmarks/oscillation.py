"""The Adyen oscillation effect on the simulator, and which mitigations remove it.

What is reproduced
    Adyen, "Contextual Bandits in Payment Processing: Non-uniform Exploration and Supervised Learning"
    (arXiv 2412.00569): a generation trained by plain supervised learning on its predecessor's non-uniform
    logs can do worse than the generation before it: as a policy improves, the authorisation rate of its logs
    rises, so its successor trains on rarer declines (more class imbalance) and a shifted reward distribution,
    and with short memory and a regression oracle it estimates worse and serves worse; the one after it
    recovers, hence an oscillation. Three settings (``--setting``), all with

    * short memory: each generation learns only from the last day, which its predecessor alone logged
      (``window`` 1 day, ``pool_generations`` off), without importance weights;
    * sharp exploration: SquareCB with the policy's own gamma ``--gamma`` (default 20,000; ``gamma_schedule``
      ``fixed``) and probability floor 0.001 (``--floor``; ``floor_schedule`` ``policy``) for 16 days
      (``--days``);

    and a world that differs from the simulator's own (no drift) by a transformation that is the same at every
    time and keeps the ranking of the actions in every context:

    * ``strong`` (the one that shows the effect): every action's effect on the authorisation logit multiplied
      by 5 around the neutral action ``none`` (:class:`StrongActionsWorld`; ``--scale``, ``--shift``), so
      uniform random approves about 90% and the best action about 98%: a good policy cuts the declines in its
      logs by about half. 2,000 decisions a day (``--per-day``) and the paper's regression oracle (LightGBM
      with squared loss, ``--objective regression``);
    * ``adyen``: every authorisation logit ``-1`` (:class:`ShiftedWorld`, the prior-drift preset at full
      strength as a step): fewer approvals, less class imbalance; 4,000 decisions a day, cross-entropy oracle;
    * ``imbalanced``: ``+1``: about 97% approvals under uniform random and 98% under the best action; the
      actions' differences are compressed as much as the declines, so a better policy moves the class balance
      of its logs very little. 4,000 decisions a day, cross-entropy oracle.

    Generation 0 is uniform random for one day, then a generation is retrained and promoted every day
    through the production paths (real Decider, SQLite ledger, ``retrain``, ``promote``; LightGBM on one
    thread). Each generation's ``lift`` is measured from the world's truth: per transaction it served,
    ``sum_a p(a|x) P(auth | x, a)`` under the probabilities its decision logged minus the same under uniform
    random, averaged (standard errors over transactions). The outcome noise does not enter.

What is compared
    Each mitigation changes one thing of the setting: ``pooled`` (the logs of every generation of the last 30
    days, each row with its own propensity), ``floor 0.05``, ``trust region 0.1``
    (:func:`banditgate.pipelines.retrain.trust_region_gamma`), ``prior correction`` (class-balanced training,
    odds corrected back), ``importance weighting`` (``1 / propensity`` clipped at 20), ``recalibration``
    (isotonic regression of the reward on the oracle's score, fitted on the retrain's held-out rows:
    ``calibration="isotonic"``).

    The decline is measured on the learned generations 1..N: ``first`` is generation 1's lift (trained on
    uniform logs, the one supervised learning is sound for), ``late`` the mean lift of the last half of the
    generations, ``late - first`` with a 95% interval (``first``'s standard error over its transactions and
    ``late``'s over generations; generation 1's own model-to-model variability is not in it, which is why
    the settings run on more than one seed); and the ordinary least-squares ``slope`` of lift per
    generation with its 95% interval from the residual scatter (t distribution). A decline is significant
    when the interval of ``late - first`` lies below 0. ``lag1_autocorrelation`` and ``turns`` (inner
    generations that are a local peak or trough) tell an oscillation from noise. ``health`` is the oscillation flag of
    :func:`banditgate.pipelines.health.generation_health` on the same ledger (realised rewards only, no
    access to the truth).

Run: ``python benchmarks/oscillation.py [--setting strong] [--seeds 21 22 23] [--only strong ...]
[--objective auto] [--output NAME]`` (``strong``: about 1.5-4 minutes per configuration and seed on this loaded
machine); results in benchmarks/results/oscillation.json (or ``NAME.json``).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from banditgate.ledger import registry
from banditgate.ledger.db import make_engine, make_sessionmaker
from banditgate.ledger.migrate import upgrade
from banditgate.ledger.promotion import promote
from banditgate.pipelines.health import Z95, generation_health
from banditgate.pipelines.retrain import RetrainOptions, retrain
from banditgate.simulator import PaymentWorld
from banditgate.simulator.authorisation import PRIOR_SHIFT, AuthorisationModel
from banditgate.simulator.contexts import ContextBatch
from banditgate.simulator.drift import DriftEffects
from benchmarks.generations_experiment import replay, standard_error
from benchmarks.workload import environment, table, write_results
from tests.support.ledger_fill import fill

#: What every setting keeps fixed: short memory (the last day only, its predecessor's logs alone), no importance
#: weights, the policy's own sharp gamma and tiny floor (no OPE choice of gamma, no evidence floor).
SHORT_MEMORY: dict[str, Any] = {
    "window": timedelta(days=1),
    "pool_generations": False,
    "gamma_schedule": "fixed",
    "floor_schedule": "policy",
}

#: The settings: the logit shift of every authorisation (the world's level of approvals, hence the class imbalance
#: of the logs), the scale of the actions' effects (1: the simulator's own; see :class:`StrongActionsWorld`), the
#: probability floor and the decisions a day.
SETTINGS: dict[str, dict[str, Any]] = {
    "adyen": {"shift": -1.0, "scale": 1.0, "floor": 0.001, "per_day": 4000, "objective": "auto"},
    "imbalanced": {"shift": 1.0, "scale": 1.0, "floor": 0.001, "per_day": 4000, "objective": "auto"},
    "strong": {"shift": 0.0, "scale": 5.0, "floor": 0.001, "per_day": 2000, "objective": "regression"},
}


def configurations(
    setting: str = "strong", floor: float | None = None, shift: float | None = None, scale: float | None = None
) -> dict[str, dict[str, Any]]:
    """A setting of :data:`SETTINGS` (with its floor, logit shift and scale of the actions' effects, or
    ``floor``, ``shift`` and ``scale``) and one mitigation of it at a time."""
    shift = SETTINGS[setting]["shift"] if shift is None else shift
    floor = SETTINGS[setting]["floor"] if floor is None else floor
    scale = SETTINGS[setting]["scale"] if scale is None else scale
    world = {"shift": shift, "scale": scale}
    base = SHORT_MEMORY
    return {
        setting: {**world, "floor": floor, "options": base},
        "pooled 30 d": {
            **world,
            "floor": floor,
            "options": {**base, "window": timedelta(days=30), "pool_generations": True},
        },
        "floor 0.05": {**world, "floor": 0.05, "options": base},
        "trust region 0.1": {**world, "floor": floor, "options": {**base, "trust_region": 0.1}},
        "prior correction": {**world, "floor": floor, "options": {**base, "prior_correction": True}},
        "importance weighting": {**world, "floor": floor, "options": {**base, "importance_weighting": True}},
        "recalibration": {**world, "floor": floor, "options": {**base, "calibration": "isotonic"}},
    }


class ShiftedWorld(PaymentWorld):
    """The payment world (no drift) with every authorisation's logit moved by ``shift`` from day 0.

    The shift enters as a constant prior effect (``shift / PRIOR_SHIFT``), so it is the same for every action
    (the ranking of actions in a context is unchanged) and the chargeback logit moves with it
    (:mod:`banditgate.simulator.chargebacks`). ``shift=-1`` is the prior-drift preset at full strength as a step.
    """

    def __init__(self, shift: float, seed: int) -> None:
        super().__init__("none", seed=seed)
        self.shift = shift

    def _shifted(self, effects: DriftEffects) -> DriftEffects:
        return replace(effects, prior=np.asarray(effects.prior) + self.shift / PRIOR_SHIFT)

    def effects(self, t: datetime) -> DriftEffects:
        return self._shifted(super().effects(t))

    def _effects_at(self, micros: np.ndarray) -> DriftEffects:
        return self._shifted(super()._effects_at(micros))


@dataclass(frozen=True)
class StrongActionsModel(AuthorisationModel):
    """The simulator's authorisation model with every action's effect scaled by ``scale`` and every logit moved
    by ``shift``: ``L'_j = L_ref + scale * (L_j - L_ref) + shift``, where ``L_ref`` is the logit of the neutral
    action ``none`` (primary acquirer, default 3-D Secure, no retry, reformat or updater), which is the base
    logit of :class:`~banditgate.simulator.authorisation.AuthorisationModel`. For ``scale > 0`` the ranking of
    the actions in every context is unchanged; the same transformation holds at every time."""

    scale: float = 1.0
    shift: float = 0.0

    def logits(self, contexts: ContextBatch, effects: DriftEffects) -> np.ndarray:
        logits = super().logits(contexts, effects)
        reference = logits[:, [self.catalogue.position("none")]]
        return reference + self.scale * (logits - reference) + self.shift


class StrongActionsWorld(PaymentWorld):
    """The payment world (no drift) in which the actions matter more: :class:`StrongActionsModel` with
    ``scale`` and ``shift`` from day 0.

    Only the authorisation model changes; the chargeback model (whose action effects are liability, not
    authorisation, and which the learners here never see) is the simulator's own.
    """

    def __init__(self, scale: float, shift: float, seed: int) -> None:
        super().__init__("none", seed=seed)
        if scale <= 0.0:
            raise ValueError(f"scale must be positive (it keeps the ranking of the actions), got {scale}")
        base = self.authorisation
        self.authorisation = StrongActionsModel(base.cards, base.catalogue, base.traits, scale=scale, shift=shift)


def make_world(config: dict[str, Any], seed: int) -> PaymentWorld:
    """The world of a configuration: :class:`StrongActionsWorld` when it scales the actions' effects, else
    :class:`ShiftedWorld`."""
    if config.get("scale", 1.0) != 1.0:
        return StrongActionsWorld(config["scale"], config["shift"], seed)
    return ShiftedWorld(config["shift"], seed)


def run(
    name: str, config: dict[str, Any], days: int, per_day: int, gamma: float, seed: int, objective: str = "auto"
) -> dict[str, Any]:
    """Generations 0..days-1 of one configuration, retrained and promoted daily; lift from the world's truth.

    ``objective`` is the LightGBM oracle's (``auto``: cross-entropy on authorisation outcomes).
    """
    world = make_world(config, seed)
    folder = Path(tempfile.mkdtemp(prefix="bg-oscillation-"))
    artifacts = folder / "artifacts"
    engine = make_engine(f"sqlite:///{folder / 'ledger.db'}", sqlite_synchronous="NORMAL")
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    spec = registry.PolicySpec(exploration="squarecb", exploration_params={"gamma": gamma}, floor=config["floor"])
    with sessions() as session, session.begin():
        registry.put_policy(session, "default", spec, actor="experiment")
    started = time.perf_counter()
    generations: list[dict[str, Any]] = []
    for number in range(days):
        start = world.epoch + timedelta(days=number)
        prefix, traffic_seed = f"g{number}-", seed * 1000 + number
        served = fill(
            sessions, artifacts, world, start=start, days=1, per_day=per_day, seed=traffic_seed, prefix=prefix
        )
        truth = replay(sessions, world, start, 1, per_day, traffic_seed, prefix)
        lift = truth["expected"] - truth["uniform"]
        generations.append(
            {
                "generation": number,
                "expected_reward": served["expected_reward"],
                "uniform_reward": served["uniform_reward"],
                "best_reward": served["best_reward"],
                "lift": float(lift.mean()),
                "lift_standard_error": standard_error(lift),
            }
        )
        print(f"  {name} seed {seed}: generation {number} lift {lift.mean():+.4f}", flush=True)
        if number + 1 == days:
            break
        options = RetrainOptions(
            as_of=start + timedelta(days=1),
            oracle_overrides={"num_threads": 1, "objective": objective},
            **config["options"],
        )
        candidate = retrain(sessions, artifacts, "default", options).generation
        generations[-1]["next_training_positive_rate"] = candidate.row_counts.get("positive_rate")
        with sessions() as session, session.begin():
            promote(session, "default", candidate.number, actor="experiment", reason="scheduled promotion")
    health = generation_health(
        sessions, artifacts, "default", as_of=world.epoch + timedelta(days=days + 1), window=timedelta(days=days + 2)
    )
    engine.dispose()
    return {
        "seconds": time.perf_counter() - started,
        "generations": generations,
        "decline": decline(generations),
        "health": health["oscillation"],
    }


def decline(generations: list[dict[str, Any]]) -> dict[str, Any]:
    """First learned generation vs the last half, and the lift's trend over the learned generations."""
    learned = generations[1:]
    lifts = np.array([g["lift"] for g in learned])
    late = lifts[len(lifts) // 2 :]
    first, first_se = learned[0]["lift"], learned[0]["lift_standard_error"]
    late_se = float(late.std(ddof=1) / math.sqrt(len(late)))
    difference, difference_se = float(late.mean() - first), math.sqrt(first_se**2 + late_se**2)
    x = np.arange(len(lifts), dtype=np.float64)
    slope, intercept = np.polyfit(x, lifts, 1)
    residual = lifts - (slope * x + intercept)
    slope_se = math.sqrt(float(residual @ residual) / (len(lifts) - 2) / float(((x - x.mean()) ** 2).sum()))
    t = float(stats.t.ppf(0.975, len(lifts) - 2))
    return {
        "first": first,
        "late_mean": float(late.mean()),
        "late_generations": len(late),
        "mean": float(lifts.mean()),
        "late_minus_first": difference,
        "late_minus_first_ci": [difference - Z95 * difference_se, difference + Z95 * difference_se],
        "significant_decline": bool(difference + Z95 * difference_se < 0),
        "slope": float(slope),
        "slope_ci": [float(slope - t * slope_se), float(slope + t * slope_se)],
        "lag1_autocorrelation": float(np.corrcoef(lifts[:-1], lifts[1:])[0, 1]),
        # An oscillation turns at every generation; independent lifts turn at 2/3 of the inner points.
        "turns": int((np.diff(np.sign(np.diff(lifts))) != 0).sum()),
        "turns_possible": len(lifts) - 2,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=16, help="simulated days (one generation a day)")
    parser.add_argument(
        "--per-day", type=int, default=None, help="decisions per simulated day (default: the setting's, 4000 or 2000)"
    )
    parser.add_argument("--gamma", type=float, default=20_000.0, help="SquareCB's gamma")
    parser.add_argument("--seeds", type=int, nargs="+", default=[21])
    parser.add_argument(
        "--setting",
        choices=list(SETTINGS),
        default="strong",
        help="strong (default): the actions' effects on the logit x5 (uniform random approves 90%%, the best action "
        "98%%); adyen: authorisation logits -1 (fewer approvals); imbalanced: +1 (more approvals, rarer declines)",
    )
    parser.add_argument("--floor", type=float, default=None, help="the setting's probability floor (0.001)")
    parser.add_argument("--shift", type=float, default=None, help="the setting's authorisation logit shift")
    parser.add_argument("--scale", type=float, default=None, help="the setting's scale of the actions' effects")
    parser.add_argument(
        "--objective",
        choices=["auto", "regression"],
        default=None,
        help="the LightGBM oracle's objective (auto: cross-entropy; regression: squared loss, SquareCB's oracle; "
        "default: the setting's, regression for strong)",
    )
    args, _ = parser.parse_known_args()
    known = configurations(args.setting, args.floor, args.shift, args.scale)
    parser.add_argument("--only", nargs="+", choices=list(known), default=list(known), help="configurations to run")
    parser.add_argument("--output", default="oscillation", help="results file name (benchmarks/results/<name>.json)")
    args = parser.parse_args()
    if args.days < 6:
        parser.error("--days must be at least 6")
    if args.per_day is None:
        args.per_day = int(SETTINGS[args.setting]["per_day"])
    if args.objective is None:
        args.objective = SETTINGS[args.setting]["objective"]
    if args.per_day <= 0 or (args.scale is not None and args.scale <= 0.0):
        parser.error("--per-day and --scale must be positive")
    runs = {
        f"{name} / {seed}": run(name, known[name], args.days, args.per_day, args.gamma, seed, args.objective)
        for name in args.only
        for seed in args.seeds
    }
    write_results(
        args.output,
        {
            "benchmark": "oscillation",
            **environment(),
            "days": args.days,
            "per_day": args.per_day,
            "gamma": args.gamma,
            "setting": args.setting,
            "objective": args.objective,
            "seeds": args.seeds,
            "configurations": {
                n: {
                    "shift": c["shift"],
                    "scale": c["scale"],
                    "floor": c["floor"],
                    **{k: str(v) for k, v in c["options"].items()},
                }
                for n, c in known.items()
                if n in args.only
            },
            "runs": runs,
        },
    )
    rows = []
    for key, result in runs.items():
        d, lifts = result["decline"], [g["lift"] for g in result["generations"]]
        low, high = d["late_minus_first_ci"]
        rows.append(
            [
                key,
                " ".join(f"{v:+.3f}" for v in lifts[1:6]),
                f"{d['first']:+.4f}",
                f"{d['late_mean']:+.4f}",
                f"{d['late_minus_first']:+.4f} [{low:+.4f}, {high:+.4f}]",
                "yes" if d["significant_decline"] else "no",
                f"{d['slope'] * 1000:+.2f} [{d['slope_ci'][0] * 1000:+.2f}, {d['slope_ci'][1] * 1000:+.2f}]",
                f"{d['lag1_autocorrelation']:+.2f}",
                f"{d['turns']}/{d['turns_possible']}",
                "yes" if result["health"]["flagged"] else "no",
                f"{result['seconds']:.0f}",
            ]
        )
    print(
        table(
            [
                "configuration / seed",
                "lift, generations 1-5",
                "first",
                "late mean",
                "late - first [95% CI]",
                "decline",
                "slope x1000/gen. [95% CI]",
                "lag-1 ac.",
                "turns",
                "health flag",
                "seconds",
            ],
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
