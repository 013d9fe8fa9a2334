"""In-process decision latency: ``Decider.decide`` with a LightGBM oracle of 100 trees and 10 actions.

What is measured
    The wall time of one call to :meth:`banditgate.service.decider.Decider.decide` (score the candidates,
    SquareCB probabilities with a 0.01 floor, reproducible draw, the record to log), for 10,000 decisions
    after a warm-up of 1,000, each with a fresh context and 10 candidate actions. Nothing is written to the
    database here: this is the CPU cost a request pays before its durable write (see ``bench_http.py``).

How
    A SQLite ledger in a temporary folder is migrated; a policy is created with ``put_policy`` (SquareCB,
    floor 0.01); a ``LightGBMOracle(num_boost_round=100)`` is trained on synthetic decisions with 30 model
    columns (21 context features mixing numbers, categories and flags, 8 action features, the action id),
    stored, registered and deployed as generation 1 through the registry, and loaded by
    ``PolicyCache.refresh()`` exactly as a serving process loads it. Each call is timed on its own with
    ``time.perf_counter_ns`` (about 0.1 us of timer overhead per sample); the garbage collector stays on, as
    in the service.

    To show where the time goes, the parts of a decision are timed the same way on the same inputs:
    ``Booster.predict(num_threads=1)`` on the already encoded 10x30 float arrays (LightGBM's Python API, as a
    yardstick), the direct C call the oracle makes instead (``LightGBMOracle.predict_matrix``), the encoding
    (``FeatureSpace.transform_decision``), the oracle call (``oracle.predict_decision``), the exploration
    rule, and the bookkeeping (request fingerprint, id + draw).

Target (docs/operations.md, "Performance targets"): p50 <= 100 us, p99 <= 500 us. When it is missed (or with
``--profile``) the decisions are run again under cProfile and the most expensive functions are printed.

Run: ``python benchmarks/bench_decision_latency.py [--quick] [--profile]``; results go to
``benchmarks/results/bench_decision_latency.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gc
import io
import itertools
import os
import pstats
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from workload import (
    Shape,
    code_state,
    deploy_trained_policy,
    environment,
    machine_cpu_seconds,
    make_actions,
    make_context,
    percentiles_us,
    process_cpu_seconds,
    record_code,
    table,
    train_oracle,
    wait_for_quiet,
    write_results,
)

from banditgate.ledger.db import make_engine, make_sessionmaker
from banditgate.ledger.records import DEFAULT_SEGMENT_KEYS, DecisionRecord, segment_values
from banditgate.policies.actions import Action
from banditgate.policies.sampling import choose, uniform_draw
from banditgate.service.decider import Decider, now_ms, request_fingerprint
from banditgate.service.decision_ids import DecisionIds
from banditgate.service.policy_cache import PolicyCache, ServingPolicy

#: The banditgate code this process imported (just above): what is measured, whatever happens to the files later.
CODE_AT_IMPORT = code_state()
NAME = "bench_decision_latency"
POLICY = "bench"
TARGET_P50_US = 100.0
TARGET_P99_US = 500.0


_IDS = DecisionIds()  # like the decider's: a random prefix and a counter


def time_each(fn: Callable[[int], Any], n: int, warmup: int) -> np.ndarray:
    """Call ``fn(i)`` for ``i`` in ``range(warmup + n)``; return the wall time of the last ``n`` calls in ns."""
    for i in range(warmup):
        fn(i)
    samples = np.empty(n, dtype=np.int64)
    clock = time.perf_counter_ns
    for k in range(n):
        i = warmup + k
        start = clock()
        fn(i)
        samples[k] = clock() - start
    return samples


STEPS = (
    "decision id (DecisionIds)",
    "Action objects",
    "rule.params()",
    "encode (transform_decision)",
    "predict (C call)",
    "rule.probability_list",
    "uniform_draw",
    "choose",
    "exploited",
    "copy of actions for the record",
    "request_fingerprint",
    "now_ms",
    "segment_values",
    "DecisionRecord(...)",
)


def decide_in_steps(
    serving: ServingPolicy, context: dict[str, Any], actions: list[dict[str, Any]], decision_id: str | None = None
) -> tuple[DecisionRecord, list[int]]:
    """The body of ``Decider.decide`` (oracle path) with a clock reading between its statements.

    Timing the steps inside one decision shows their cost with the caches as a real decision leaves them,
    which is more than the same call costs in a tight loop of its own. ``main`` checks that this mirror still
    builds the same record as ``Decider.decide`` and skips the step table if the decider has changed.
    """
    clock = time.perf_counter_ns
    oracle: Any = serving.oracle
    rule = serving.rule
    name = POLICY
    t = [clock()]
    decision_id = decision_id or _IDS.next()
    t.append(clock())
    candidates = [Action(a["id"], a.get("features") or {}) for a in actions]
    t.append(clock())
    params = rule.params()
    t.append(clock())
    matrix = oracle.space_.transform_decision(context, candidates)
    t.append(clock())
    scores = oracle.predict_matrix(matrix).tolist()
    t.append(clock())
    probabilities = rule.probability_list(scores)
    t.append(clock())
    draw = uniform_draw(decision_id, name, serving.generation)
    t.append(clock())
    index = choose(probabilities, draw)
    t.append(clock())
    _exploited = scores[index] >= max(scores)
    t.append(clock())
    logged_actions = [{"id": a["id"], "features": dict(a.get("features") or {})} for a in actions]
    t.append(clock())
    fingerprint = request_fingerprint(name, context, actions)
    t.append(clock())
    decided_at = now_ms()
    t.append(clock())
    segments = segment_values(context, DEFAULT_SEGMENT_KEYS)
    t.append(clock())
    record = DecisionRecord(
        decision_id=decision_id,
        policy=name,
        generation=serving.generation,
        context=dict(context),
        actions=logged_actions,
        probabilities=probabilities,
        action_id=candidates[index].id,
        propensity=probabilities[index],
        exploration=rule.name,
        exploration_params=params,
        model_sha256=serving.model_sha256,
        draw=draw,
        request_sha256=fingerprint,
        decided_at=decided_at,
        segment_values=segments,
    )
    t.append(clock())
    return record, [b - a for a, b in itertools.pairwise(t)]


def mirror_matches(decider: Decider, serving: ServingPolicy, contexts: list[Any], action_sets: list[Any]) -> bool:
    """Whether :func:`decide_in_steps` builds the record ``Decider.decide`` builds (timestamps aside)."""
    for i in range(20):
        decision_id = f"mirror-check-{i}"
        expected, _ = decider.decide(contexts[i], action_sets[i], decision_id=decision_id)
        mirrored, _ = decide_in_steps(serving, contexts[i], action_sets[i], decision_id=decision_id)
        if dataclasses.replace(mirrored, decided_at=expected.decided_at) != expected:
            return False
    return True


def profile_decisions(decide: Callable[[int], Any], count: int, top: int = 25) -> list[dict[str, Any]]:
    """Run ``decide`` ``count`` times under cProfile; return the ``top`` functions by own time per decision."""
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(count):
        decide(i)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    entries = []
    for (filename, line, function), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        entries.append(
            {
                "function": f"{Path(filename).name}:{line}({function})",
                "path": filename,
                "calls_per_decision": calls / count,
                "own_us_per_decision": tottime / count * 1e6,
                "cumulative_us_per_decision": cumtime / count * 1e6,
            }
        )
    entries.sort(key=lambda e: e["own_us_per_decision"], reverse=True)
    return entries[:top]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 decisions and a smaller training set")
    parser.add_argument("--profile", action="store_true", help="profile even when the target is met")
    parser.add_argument("--decisions", type=int, default=None, help="timed decisions (default 10,000)")
    parser.add_argument("--max-wait", type=float, default=120.0, help="seconds to wait for an idle machine")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    started = datetime.now(UTC).isoformat(timespec="seconds")

    n = args.decisions or (2_000 if args.quick else 10_000)
    warmup = 200 if args.quick else 1_000
    training_rows = 5_000 if args.quick else 20_000
    shape = Shape(context_features=21, action_features=8, actions=10)

    print(f"training LightGBMOracle(num_boost_round=100) on {training_rows:,} synthetic decisions ...", flush=True)
    oracle = train_oracle(shape, rows=training_rows, num_boost_round=100, seed=args.seed)
    trees = oracle.booster_.num_trees()
    leaves = sum(t["num_leaves"] for t in oracle.booster_.dump_model()["tree_info"])

    rng = np.random.default_rng(args.seed + 1)
    total = warmup + n
    contexts = [make_context(rng, shape) for _ in range(total)]
    action_sets = [make_actions(rng, shape) for _ in range(total)]
    candidates = [[Action(a["id"], a["features"]) for a in actions] for actions in action_sets]

    with tempfile.TemporaryDirectory(prefix="banditgate-bench-") as tmp:
        ledger = deploy_trained_policy(f"sqlite:///{tmp}/ledger.db", Path(tmp) / "artifacts", POLICY, oracle)
        engine = make_engine(ledger.database_url)
        try:
            cache = PolicyCache(make_sessionmaker(engine), ledger.artifact_dir)
            loaded = cache.refresh()
        finally:
            engine.dispose()
    serving = cache.get(POLICY)
    if serving is None or serving.oracle is None or serving.generation != ledger.generation:
        raise SystemExit(f"policy cache did not load generation {ledger.generation} of {POLICY!r}: {loaded}")
    served_oracle: Any = serving.oracle  # the oracle as loaded from its artifact, not the one trained above
    booster = served_oracle.booster_
    space = served_oracle.space_
    rule = serving.rule
    decider = Decider(cache, POLICY)
    matrices = [space.transform_decision(c, a) for c, a in zip(contexts, candidates, strict=True)]
    columns = matrices[0].shape[1]
    scores = [served_oracle.predict_decision(c, a).tolist() for c, a in zip(contexts, candidates, strict=True)]
    probabilities = [rule.probability_list(s) for s in scores]

    # Sanity: what the decider returns is a valid decision of the deployed generation.
    record, _ = decider.decide(contexts[0], action_sets[0])
    assert record.generation == ledger.generation and record.exploration == "squarecb"
    assert abs(sum(record.probabilities) - 1.0) < 1e-9 and min(record.probabilities) >= 0.01 - 1e-12
    if decider.fallbacks:
        raise SystemExit("the oracle failed during the sanity check (decision fell back to uniform)")

    def decide(i: int) -> Any:
        return decider.decide(contexts[i], action_sets[i])

    parts: dict[str, Callable[[int], Any]] = {
        f"Booster.predict, {shape.actions}x{columns} float64, num_threads=1": lambda i: booster.predict(
            matrices[i], num_threads=1
        ),
        "FeatureSpace.transform_decision (encoding)": lambda i: space.transform_decision(contexts[i], candidates[i]),
        "oracle.predict_decision (encoding + predict)": lambda i: served_oracle.predict_decision(
            contexts[i], candidates[i]
        ),
        f"LightGBMOracle.predict_matrix (the C call), {shape.actions}x{columns}": lambda i: (
            served_oracle.predict_matrix(matrices[i])
        ),
        "SquareCB.probability_list (floor 0.01)": lambda i: rule.probability_list(scores[i]),
        "request_fingerprint (canonical JSON + sha256)": lambda i: request_fingerprint(
            POLICY, contexts[i], action_sets[i]
        ),
        "decision id + uniform_draw + choose": lambda i: choose(probabilities[i], uniform_draw(_IDS.next(), POLICY, 1)),
    }

    background = wait_for_quiet(args.max_wait)
    print(f"timing {n:,} decisions after {warmup:,} warm-up calls ...", flush=True)
    busy0, own0, wall0 = machine_cpu_seconds()[0], process_cpu_seconds(os.getpid()), time.perf_counter()
    gc.collect()
    decide_stats = percentiles_us(time_each(decide, n, warmup))
    part_stats = {}
    for label, fn in parts.items():
        gc.collect()
        part_stats[label] = percentiles_us(time_each(fn, n, warmup))
    if decider.fallbacks:
        raise SystemExit(f"{decider.fallbacks} decisions fell back to uniform: the oracle failed")

    wall = time.perf_counter() - wall0
    others = max(0.0, (machine_cpu_seconds()[0] - busy0) - (process_cpu_seconds(os.getpid()) - own0)) / wall

    step_stats: dict[str, dict[str, float]] | None = None
    if mirror_matches(decider, serving, contexts, action_sets):
        gc.collect()
        steps = np.array([decide_in_steps(serving, contexts[i], action_sets[i])[1] for i in range(total)])[warmup:]
        step_stats = {label: percentiles_us(steps[:, j]) for j, label in enumerate(STEPS)}
        step_stats["sum of the steps"] = percentiles_us(steps.sum(axis=1))
    else:
        print("note: Decider.decide has changed since this benchmark mirrored it; skipping the step breakdown")

    met = decide_stats["p50"] <= TARGET_P50_US and decide_stats["p99"] <= TARGET_P99_US
    headers = ["what (us per call)", "p50", "p90", "p99", "p99.9", "max", "mean"]
    rows = [
        ["Decider.decide (full decision)", *(decide_stats[k] for k in ("p50", "p90", "p99", "p99_9", "max", "mean"))]
    ]
    rows += [[label, *(s[k] for k in ("p50", "p90", "p99", "p99_9", "max", "mean"))] for label, s in part_stats.items()]
    env = environment()
    record_code(env, CODE_AT_IMPORT)
    env["started"] = started
    print()
    print(
        f"In-process decision latency: {n:,} decisions, {shape.actions} actions, {columns} model columns, "
        f"LightGBM {trees} trees / {leaves} leaves, SquareCB floor 0.01"
    )
    print(
        f"machine: {env['machine']['cpu_model']}, {env['machine']['cpu_count']} cores, Python {env['python']}; "
        f"other processes used {others:.2f} cores during the timed loops ({background:.2f} before)"
    )
    print()
    print(table(headers, rows))
    print()
    verdict = "MET" if met else "MISSED"
    print(
        f"target p50 <= {TARGET_P50_US:.0f} us and p99 <= {TARGET_P99_US:.0f} us: {verdict} "
        f"(p50 {decide_stats['p50']:.1f} us, p99 {decide_stats['p99']:.1f} us)"
    )
    predict_share = part_stats[next(iter(parts))]["p50"] / decide_stats["p50"]
    print(f"Booster.predict (alone) is {predict_share:.0%} of the median decision; the rest is Python around it.")
    if step_stats is not None:
        print()
        print("Steps timed inside each decision (a mirror of Decider.decide; slower than the same call in a loop")
        print("of its own, because a real decision runs with the caches the other steps leave behind):")
        print(
            table(
                ["step (us)", "p50", "p99", "mean", "share of mean"],
                [
                    [label, s["p50"], s["p99"], s["mean"], f"{s['mean'] / step_stats['sum of the steps']['mean']:.0%}"]
                    for label, s in step_stats.items()
                ],
            )
        )

    profile: dict[str, Any] | None = None
    if not met or args.profile:
        count = min(n, 5_000)
        entries = profile_decisions(decide, count)
        print()
        print(f"cProfile over {count:,} decisions (own time per decision; cProfile inflates Python-heavy code):")
        print(
            table(
                ["function", "calls/decision", "own us", "cumulative us"],
                [
                    [e["function"], e["calls_per_decision"], e["own_us_per_decision"], e["cumulative_us_per_decision"]]
                    for e in entries
                ],
            )
        )
        profile = {"decisions": count, "top_by_own_time": entries}

    results = {
        "benchmark": NAME,
        "quick": args.quick,
        **env,
        "setup": {
            "decisions": n,
            "warmup": warmup,
            "actions": shape.actions,
            "context_features": shape.context_features,
            "action_features": shape.action_features,
            "model_columns": columns,
            "oracle": "LightGBMOracle",
            "oracle_params": served_oracle.hyperparameters(),
            "trees": trees,
            "leaves": leaves,
            "training_rows": training_rows,
            "exploration": rule.name,
            "exploration_params": rule.params(),
            "database": "SQLite in a temporary folder (only for the registry; decide() writes nothing)",
            "timer": "time.perf_counter_ns around each call, gc enabled",
        },
        "other_processes_cores": {"before": background, "during": others},
        "target": {"p50_us": TARGET_P50_US, "p99_us": TARGET_P99_US, "met": met},
        "decide_us": decide_stats,
        "parts_us": part_stats,
        "steps_in_decision_us": step_stats,
        "profile": profile,
    }
    path = write_results(NAME, results)
    print(f"\nresults written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
