"""Drift detection and false alarms of the gate's label-free proxies on simulated traffic (issue 4).

What is measured
    Whether the label-free proxies of :func:`banditgate.monitoring.gate.evaluate_gate` see drift that moves the
    contexts (covariate, mixed), stay quiet without drift, and are reported as blind to concept drift, at the
    magnitudes of the simulator's scenarios (:mod:`banditgate.simulator.drift`: covariate 0.6 from day 15,
    concept 0.8 from day 10, mixed = covariate 0.4 from day 15 + concept 0.5 from day 20, prior 0.5 from day
    15; each ramps in linearly over 90 days).

How
    Per scenario and seed: a SQLite ledger in a temporary folder, policy ``default`` (SquareCB, the
    PolicySpec defaults), 500 decisions a day. Days 0..14 are served by generation 0 (uniform random),
    through the real Decider, and logged with their rewards at their simulated arrival times
    (``tests/support/ledger_fill.py``). Generation 1 is retrained at the end of day 14 on a 14-day window
    (days 1..14) and promoted (no gate: this is the harness), then serves every later day. A check on day
    ``d`` evaluates the gate for generation 1 as of the start of day ``d`` (``window_days=7``, 6,000 sampled
    decisions per window, 1,000 of them scored on every candidate action), with the run's earlier reports
    as ``history`` so that alerts have hysteresis.

    * ``none``: 30 daily checks, days 16..45. A check alarms when any proxy of the label-free categories
      (score distribution, feature drift, uncertainty, disagreement, operational) is in alert, or the
      S_proxy alert (raised below 0.5, cleared above 0.6) is active; the false-alarm rate is the share of
      checks that alarm.
    * drift scenarios: 30 checks every 3 days, days 16..103 (over the ramp and past its end). A run detects
      the drift when a check after onset alarms. Concept drift is reported as "not detectable without
      labels" (label-free proxies cannot see P(Y|X) move), and every concept report must carry
      ``gate.CONCEPT_DRIFT_LIMIT``. Prior drift is reported separately.

    Outcome maturity and proxy ground truth read labels (early ones, or their arrival times), so they are
    not counted as label-free; their alerts are in the per-proxy table and the JSON. Generation 0 is
    uniform, so ``exploration_share_shift`` (chosen action's probability below the largest, current window
    against the training window) compares generation 1 with zero and alarms on every run: a second table
    leaves it out (:data:`STRUCTURAL`). The JSON holds every check's S, S_proxy, levels, dimensions, proxy
    statistics and alerts.

Target: covariate and mixed detected in every run; under 5% false alarms over the 30 checks without drift;
concept reported as not detectable without labels.

Run: ``python benchmarks/gate_detection.py [--quick] [--seeds N] [--per-day N] [--checks N] [--scenarios
...]``; results in benchmarks/results/gate_detection.json. The gate costs about 3 s a check (evidently's drift
report is most of it), so the full run (25 runs of 30 checks) takes about 50 minutes on one core; ``--quick``
(2 seeds, 8 checks) about 8.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from banditgate.ledger import registry
from banditgate.ledger.db import make_engine, make_sessionmaker
from banditgate.ledger.migrate import upgrade
from banditgate.ledger.promotion import promote
from banditgate.monitoring.alerts import evaluate_alerts
from banditgate.monitoring.gate import CONCEPT_DRIFT_LIMIT, PROXY_ALERT, GateOptions, evaluate_gate
from banditgate.pipelines.retrain import RetrainOptions, retrain
from banditgate.simulator import PaymentWorld
from banditgate.simulator.drift import DriftScenario

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.workload import environment, table, write_results
from tests.support.ledger_fill import fill

#: The proxy categories that read no label at all (the brief's "label-free" set).
LABEL_FREE = ("score_distribution", "feature_drift", "uncertainty", "disagreement", "operational")
SCENARIOS = ("none", "covariate", "concept", "mixed", "prior")
TRAINING_DAYS = 14
SERVED_FROM = TRAINING_DAYS + 1  # generation 1 serves from day 15 on
#: 6,000 sampled decisions per window: the score proxies need 1,000 held-out reference scores, and the
#: held-out part (the last 20% of the training window) gets 20% of the reference sample.
OPTIONS = GateOptions(window_days=7, sample_size=6_000, scoring_size=1_000)
#: Proxies that alarm on any run by construction of the set-up: generation 0 is uniform, so by the proxy's
#: definition (the chosen action's probability below the largest) it never explores, and generation 1's
#: exploration share is measured against zero. The second table leaves them out.
STRUCTURAL = ("exploration_share_shift",)


def check_days(scenario: str, checks: int) -> list[int]:
    """Days 16.. daily without drift; every 3 days with drift (30 checks reach day 103, past the ramp's end)."""
    step = 1 if scenario == "none" else 3
    return [SERVED_FROM + 1 + step * i for i in range(checks)]


def onset(scenario: str) -> float | None:
    """First day a drift of the scenario is non-zero (None without drift)."""
    preset = DriftScenario.preset(scenario)
    ramps = [r for r in (preset.covariate, preset.concept, preset.prior) if r is not None and r.magnitude > 0]
    return min(r.onset_day for r in ramps) if ramps else None


def run(scenario: str, seed: int, per_day: int, checks: int) -> dict[str, Any]:
    """One seeded run: fill, retrain, promote, then check the gate on the scenario's days."""
    started = time.perf_counter()
    world = PaymentWorld(scenario, seed=seed)
    folder = Path(tempfile.mkdtemp(prefix=f"bg-gate-{scenario}-{seed}-"))
    try:
        engine = make_engine(f"sqlite:///{folder / 'ledger.db'}", sqlite_synchronous="NORMAL")
        upgrade(engine)
        sessions = make_sessionmaker(engine)
        artifacts = folder / "artifacts"
        with sessions() as session, session.begin():
            registry.put_policy(session, "default", registry.PolicySpec(), actor="experiment")

        def day(d: int) -> datetime:
            return world.epoch + timedelta(days=d)

        def fill_day(d: int) -> None:
            # One traffic seed per day: the same seed on every one-day call would replay the same draws.
            fill(
                sessions,
                artifacts,
                world,
                start=day(d),
                days=1,
                per_day=per_day,
                seed=seed * 1000 + d,
                prefix=f"s{seed}-{d:03d}-",
            )

        for d in range(SERVED_FROM):
            fill_day(d)
        trained = retrain(
            sessions,
            artifacts,
            "default",
            RetrainOptions(as_of=day(SERVED_FROM), window=timedelta(days=TRAINING_DAYS)),
        ).generation.number
        with sessions() as session, session.begin():
            promote(session, "default", trained, actor="experiment", reason="detection experiment")
        prepared = time.perf_counter() - started

        history: list[dict[str, Any]] = []
        rows: list[dict[str, Any]] = []
        gate_seconds = 0.0
        filled = SERVED_FROM
        for check in check_days(scenario, checks):
            while filled < check:
                fill_day(filled)
                filled += 1
            t0 = time.perf_counter()
            with sessions() as session:
                report = evaluate_gate(
                    session, artifacts, "default", trained, as_of=day(check), options=OPTIONS, history=history
                ).report
            gate_seconds += time.perf_counter() - t0
            history.append(report)
            rows.append(_check_row(check, report, world))
        engine.dispose()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    active = evaluate_alerts([r["S_proxy"] for r in rows], PROXY_ALERT)
    for row, state in zip(rows, active, strict=True):
        row["s_proxy_alert_active"] = state.active
    result = {
        "scenario": scenario,
        "seed": seed,
        "generation": trained,
        "checks": len(rows),
        "limit_in_every_report": all(r["concept_limit"] for r in rows),
        "seconds": {
            "total": time.perf_counter() - started,
            "fill_and_retrain": prepared,
            "gate": gate_seconds,
            "gate_per_check": gate_seconds / max(len(rows), 1),
        },
        "trajectory": rows,
    }
    outcome = judge(result)
    print(
        f"  {scenario} seed {seed}: {outcome['alarms']}/{len(rows)} checks alarmed, first "
        f"{outcome['first_detection_day']}, fired {outcome['fired']} ({result['seconds']['total']:.0f} s, "
        f"gate {result['seconds']['gate_per_check']:.2f} s/check)",
        flush=True,
    )
    return result


def judge(result: dict[str, Any], excluded: tuple[str, ...] = ()) -> dict[str, Any]:
    """Alarms of one run and its first detection after onset, leaving out the ``excluded`` proxies.

    ``fired`` lists what alarmed after onset (over every check without drift: the false alarms' sources).
    """
    start = onset(result["scenario"])
    checks = []
    for row in result["trajectory"]:
        names = [n for n in row["label_free_alerts"] if n not in excluded]
        names += ["S_proxy"] if row["s_proxy_alert_active"] else []
        checks.append((row["day"], names))
    relevant = [c for c in checks if start is None or c[0] > start]
    first = next((day for day, names in relevant if names), None) if start is not None else None
    return {
        "alarms": sum(bool(names) for _, names in checks),
        "detected": first is not None,
        "first_detection_day": first,
        "fired": sorted({n for _, names in relevant for n in names}),
    }


def _check_row(check: int, report: dict[str, Any], world: PaymentWorld) -> dict[str, Any]:
    proxies = report["proxies"]
    effects = world.scenario.effects(float(check))
    return {
        "day": check,
        "effects": {"covariate": effects.covariate, "concept": effects.concept, "prior": effects.prior},
        "S": report["S"],
        "S_proxy": report["S_proxy"],
        "level": report["level"],
        "level_proxy": report["level_proxy"],
        "dimensions": {name: d["value"] for name, d in report["dimensions"].items()},
        "label_free_alerts": sorted(
            p["name"] for p in proxies if p["status"] == "alert" and p["category"] in LABEL_FREE
        ),
        "other_alerts": sorted(
            p["name"] for p in proxies if p["status"] == "alert" and p["category"] not in LABEL_FREE
        ),
        "unavailable": sorted(p["name"] for p in proxies if p["status"] == "unavailable"),
        "alerts_raised": [a.get("proxy", a["kind"]) for a in report["alerts"]],
        "statistics": {p["name"]: p["statistic"] for p in proxies},
        "concept_limit": CONCEPT_DRIFT_LIMIT in report["limits"],
    }


def summarise(scenario: str, runs: list[dict[str, Any]], excluded: tuple[str, ...] = ()) -> dict[str, Any]:
    """Detections, first detection days, proxies fired and alarmed checks over the runs of a scenario."""
    judged = [judge(r, excluded) for r in runs]
    days = [j["first_detection_day"] for j in judged if j["detected"]]
    fired = Counter(n for j in judged for n in j["fired"])
    checks = sum(r["checks"] for r in runs)
    alarmed = sum(j["alarms"] for j in judged)
    summary: dict[str, Any] = {
        "excluded_proxies": list(excluded),
        "runs": len(runs),
        "detected": sum(j["detected"] for j in judged),
        "first_detection_day_median": statistics.median(days) if days else None,
        "first_detection_day_range": [min(days), max(days)] if days else None,
        "proxies_fired_runs": dict(fired.most_common()),
        "checks": checks,
        "alarmed_checks": alarmed,
        "alarm_rate": alarmed / checks if checks else None,
        "limit_in_every_report": all(r["limit_in_every_report"] for r in runs),
        "per_run": [{"seed": r["seed"], **j} for r, j in zip(runs, judged, strict=True)],
    }
    if scenario == "none":
        summary["verdict"] = f"false alarms {'<' if summary['alarm_rate'] < 0.05 else '>='} 5%"
    elif scenario == "concept":
        summary["verdict"] = "not detectable without labels" + (
            "" if summary["limit_in_every_report"] else "; LIMIT TEXT MISSING from some reports"
        )
        if summary["detected"]:
            summary["verdict"] += f" (yet label-free alarms in {summary['detected']}/{len(runs)} runs)"
    elif scenario == "prior":
        summary["verdict"] = "reported separately"
    else:
        summary["verdict"] = "all runs detected" if summary["detected"] == len(runs) else "MISSED in some runs"
    return summary


def alert_shares(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Per proxy (label-free or not) and scenario, the share of checks in which it was in alert."""
    shares: dict[str, dict[str, float]] = {}
    for scenario, results in runs.items():
        rows = [row for r in results for row in r["trajectory"]]
        counts = Counter(n for row in rows for n in [*row["label_free_alerts"], *row["other_alerts"]])
        counts["S_proxy (active)"] = sum(row["s_proxy_alert_active"] for row in rows)
        for name, count in counts.items():
            shares.setdefault(name, {})[scenario] = count / len(rows)
    return shares


def summary_table(summaries: dict[str, dict[str, Any]]) -> str:
    rows = []
    for scenario, s in summaries.items():
        detected = "-" if scenario == "none" else f"{s['detected']}/{s['runs']}"
        first = "-"
        if s["first_detection_day_median"] is not None:
            low, high = s["first_detection_day_range"]
            first = f"{s['first_detection_day_median']:g} ({low}-{high})"
        fired = ", ".join(f"{n} {c}" for n, c in s["proxies_fired_runs"].items()) or "-"
        alarms = f"{s['alarmed_checks']}/{s['checks']} ({100 * s['alarm_rate']:.1f}%)"
        rows.append([scenario, s["runs"], detected, first, fired, alarms, s["verdict"]])
    headers = ["scenario", "runs", "detected", "first day: median (range)", "proxies fired (runs)"]
    return table([*headers, "checks alarmed", "verdict"], rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, 8 checks a run")
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 5)")
    parser.add_argument("--per-day", type=int, default=500, help="decisions a day (default 500)")
    parser.add_argument("--checks", type=int, default=None, help="checks per run (default 30)")
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--results", default="gate_detection", help="results file name in benchmarks/results/")
    args = parser.parse_args()
    # evidently's pandas deprecation notices, one per drift test: thousands of lines that say nothing here.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"evidently\.")
    seeds = args.seeds or (2 if args.quick else 5)
    checks = args.checks or (8 if args.quick else 30)
    started = time.perf_counter()
    runs: dict[str, list[dict[str, Any]]] = {}
    for scenario in args.scenarios:
        print(f"{scenario}: {seeds} seeds x {checks} checks, {args.per_day} decisions a day", flush=True)
        runs[scenario] = [run(scenario, seed, args.per_day, checks) for seed in range(seeds)]
    summaries = {s: summarise(s, r) for s, r in runs.items()}
    without = {s: summarise(s, r, STRUCTURAL) for s, r in runs.items()}
    shares = alert_shares(runs)
    share_rows = [[name, *(f"{100 * by.get(s, 0.0):.0f}%" for s in runs)] for name, by in sorted(shares.items())]
    path = write_results(
        args.results,
        {
            "benchmark": "gate_detection",
            **environment(),
            "per_day": args.per_day,
            "seeds": seeds,
            "checks": checks,
            "training_days": TRAINING_DAYS,
            "gate_options": OPTIONS.to_dict(),
            "label_free_categories": list(LABEL_FREE),
            "seconds": time.perf_counter() - started,
            "summary": summaries,
            "summary_without_structural": without,
            "alert_shares": shares,
            "runs": runs,
        },
    )
    print("\nLabel-free proxies (categories " + ", ".join(LABEL_FREE) + ") or an active S_proxy alert:")
    print(summary_table(summaries))
    print(f"\nThe same without {', '.join(STRUCTURAL)} (its reference is generation 0's window, see the docstring):")
    print(summary_table(without))
    print("\nShare of checks in which each proxy was in alert:")
    print(table(["proxy", *runs], share_rows))
    print(f"\nresults: {path} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
