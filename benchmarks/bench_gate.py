"""The sufficiency gate over a 1,000,000-decision window: wall time and peak memory of `evaluate_gate` (issue 4).

What is measured
    One call of :func:`banditgate.monitoring.gate.evaluate_gate` for a trained generation of the simulated
    payment world's policy, as of day 91 with ``window_days=91``, so that the current window holds every
    decision of the 90-day, 1,000,000-decision ledger of ``bench_retrain.py``: reading the evidence (every
    decision's flat columns and labels, a sample of 20,000 decisions per window in full), scoring the samples
    with the generation's LightGBM oracle (5,000 of them on every candidate action), the four dimensions
    overall and per segment (issuer country x action), the label-arrival curve, the seven proxy categories
    (evidently's drift report included), S_proxy and the alerts: the gate's default options. The generation
    is trained on days 0..44 (a 45-day window), so its reference window is its training window and the
    decisions after day 45 are out of sample. Generation 0 (uniform) stays deployed, so the disagreement
    proxy is unavailable and its second scoring pass (the deployed oracle on the candidate sets) is not in
    the time.

How
    The ledger is the cached one of ``bench_retrain.py`` (built with its ``build_ledger`` if missing). The
    first run retrains the generation (registered as a candidate, never deployed) and records its number in
    ``gate-generation`` next to the ledger; later runs reuse it. The gate runs in a child process, so the
    peak resident memory is the gate's own: the child imports banditgate and evidently (timed separately),
    empties the gate's reference cache and times the generation's first ``evaluate_gate`` call (which reads
    and scores the reference sample and caches both), then a second one: what every later ``banditgate
    gate`` command and promotion pays after its imports; the target applies to it. It then runs the gate a
    third time under cProfile and attributes the cumulative time of the helpers ``evaluate_gate`` calls to
    the phases read_evidence, scoring, dimensions,
    label latency, proxies and report (profiled times are inflated by the profiler; the shares are what
    they are for). When the target is missed the top 25 functions by cumulative time are printed
    and stored.

Target: <= 15 s (docs/operations.md, "Performance targets").

Run: ``python benchmarks/bench_gate.py [--decisions N] [--profile]``; results in
benchmarks/results/bench_gate.json.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import resource
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS.parent))

TRAINED_DAYS = 45
TARGET_SECONDS = 15.0
MARKER = "gate-generation"

#: Phases of evaluate_gate: the helpers it calls directly, by function name (gate.py's own, or imported).
PHASES = {
    "read_evidence": ("read_evidence",),
    "load oracle": ("load_artifact", "generation_rule"),
    "scoring": ("_score",),
    "dimensions": (
        "_evidence_frame",
        "_reference_scores",
        "window_dimensions",
        "_segment_references",
        "segment_dimensions",
        "_values",
        "composite",
        "requirements",
    ),
    "label latency": ("_arrival_frame", "arrival_curve", "_latency_report"),
    "proxies": (
        "score_distribution_proxies",
        "_feature_drift",
        "_uncertainty",
        "_disagreement",
        "_operational",
        "operational_proxies",
        "_cohorts",
        "maturity_proxies",
        "_early",
        "ground_truth_proxies",
        "proxy_dimensions",
    ),
    "report": ("_segment_report", "_alerts", "_summary", "_jsonable"),
}


def trained_generation(cache: Path) -> int:
    """The generation the gate is measured on: the one recorded in the cache, or a new one trained now."""
    from banditgate.ledger.db import make_engine, make_sessionmaker
    from banditgate.ledger.migrate import upgrade
    from banditgate.ledger.registry import get_generation
    from banditgate.pipelines.retrain import RetrainOptions, retrain
    from benchmarks.bench_retrain import WORLD

    engine = make_engine(f"sqlite:///{cache / 'ledger.db'}")
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    marker = cache / MARKER
    try:
        if marker.exists():
            number = int(marker.read_text().strip())
            with sessions() as session:
                found = get_generation(session, "default", number)
            if found is not None and found.oracle:
                return number
        print(f"retraining a generation on days 0..{TRAINED_DAYS - 1} for the gate (once)", flush=True)
        options = RetrainOptions(as_of=WORLD.epoch + timedelta(days=TRAINED_DAYS), window=timedelta(days=TRAINED_DAYS))
        number = retrain(sessions, cache / "artifacts", "default", options).generation.number
        marker.write_text(f"{number}\n")
        return number
    finally:
        engine.dispose()


def child(cache: Path, number: int, as_of: datetime, window_days: float) -> None:
    """Time one gate evaluation, then profile another; print the measurements as JSON.

    Nothing of banditgate is imported before this runs (see main), so the import time is the whole of it.
    """
    started = time.perf_counter()
    from banditgate.ledger.db import make_engine, make_sessionmaker
    from banditgate.monitoring.gate import GateOptions, evaluate_gate

    imported = time.perf_counter()
    # What the feature-drift proxies import lazily, timed apart from the gate.
    from evidently import DataDefinition, Dataset, Report  # noqa: F401
    from evidently.metrics import DriftedColumnsCount, ValueDrift  # noqa: F401

    evidently_imported = time.perf_counter()
    rss_before_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sessions = make_sessionmaker(make_engine(f"sqlite:///{cache / 'ledger.db'}"))
    options = GateOptions(window_days=window_days)

    def evaluate() -> dict[str, Any]:
        with sessions() as session:
            return evaluate_gate(session, cache / "artifacts", "default", number, as_of=as_of, options=options).report

    # The first evaluation of a generation reads and scores its reference sample and caches both; later ones
    # (every daily check, the promotion's) read them from the cache.
    shutil.rmtree(cache / "artifacts" / "gate-cache", ignore_errors=True)
    t0 = time.perf_counter()
    evaluate()
    cold = time.perf_counter() - t0
    rss_after_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    report = evaluate()
    seconds = time.perf_counter() - t0
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.runcall(evaluate)
    profiled = time.perf_counter() - t0
    stats = pstats.Stats(profiler)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "first_evaluation_seconds": cold,
                "import_seconds": {
                    "banditgate": imported - started,
                    "evidently": evidently_imported - imported,
                },
                "rss_mib_before_gate": rss_before_mib,
                "rss_mib_after_gate": rss_after_mib,
                "profiled_seconds": profiled,
                "phases_profiled_seconds": phases(stats),
                "cprofile_top25": text.getvalue(),
                "windows": report["windows"],
                "S": report["S"],
                "level": report["level"],
                "S_proxy": report["S_proxy"],
                "proxies": {p["name"]: p["status"] for p in report["proxies"]},
            }
        )
    )


def phases(stats: pstats.Stats) -> dict[str, float]:
    """Cumulative profiled seconds of each phase's helpers, counting only their calls from evaluate_gate."""
    raw = stats.stats  # type: ignore[attr-defined]  # (file, line, name) -> (cc, nc, tt, ct, callers)
    gate = next(key for key in raw if key[2] == "evaluate_gate" and key[0].endswith("gate.py"))
    total = raw[gate][3]
    out: dict[str, float] = {}
    for phase, names in PHASES.items():
        out[phase] = sum(
            callers[gate][3] for key, (_, _, _, _, callers) in raw.items() if key[2] in names and gate in callers
        )
    out["other"] = total - sum(out.values())
    out["total"] = total
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--profile", action="store_true", help="print the cProfile top 25 even if the target is met")
    parser.add_argument("--max-wait", type=float, default=120.0, help="seconds to wait for a quiet machine")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--generation", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--as-of", type=datetime.fromisoformat, help=argparse.SUPPRESS)
    parser.add_argument("--window-days", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.generation, args.as_of, args.window_days)
        return 0
    # Imported here, not at the top: the child must import banditgate itself, in the time it reports.
    from benchmarks.bench_retrain import DAYS, WORLD, build_ledger
    from benchmarks.workload import environment, table, wait_for_quiet, write_results

    cache = BENCHMARKS / ".cache" / f"ledger-{args.decisions}"
    cache.mkdir(parents=True, exist_ok=True)
    if not (cache / "complete").exists():
        print(f"building a ledger of {args.decisions:,} decisions in {cache} (once)")
        (cache / "ledger.db").unlink(missing_ok=True)
        build_ledger(cache / "ledger.db", args.decisions)
        (cache / "complete").touch()
    number = trained_generation(cache)
    load = wait_for_quiet(args.max_wait)
    # Day 91 with a 91-day window: the current window holds every decision of the 90 days.
    as_of = WORLD.epoch + timedelta(days=DAYS + 1)
    command = [sys.executable, __file__, "--child", str(cache), "--generation", str(number)]
    command += ["--as-of", as_of.isoformat(), "--window-days", str(DAYS + 1)]
    process = subprocess.run(command, capture_output=True, text=True)
    if process.returncode != 0:
        print(process.stderr, file=sys.stderr)
        return 1
    measured = json.loads(process.stdout.strip().splitlines()[-1])
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    met = measured["seconds"] <= TARGET_SECONDS
    top25 = measured.pop("cprofile_top25")
    results = {
        "benchmark": "bench_gate",
        **environment(),
        "decisions": args.decisions,
        "generation": number,
        "as_of": as_of.isoformat(),
        "window_days": DAYS + 1,
        "other_processes_cores_before": load,
        **measured,
        "peak_rss_gib": peak_gib,
        "target": {"seconds": TARGET_SECONDS, "met": met},
    }
    if not met or args.profile:
        results["cprofile_top25"] = top25
    write_results("bench_gate", results)
    current = measured["windows"]["current"]
    print(
        table(
            ["decisions in window", "sampled", "evaluate_gate s", "first (cold cache) s", "peak RSS GiB", "imports s"],
            [
                [
                    current["decisions"],
                    current["sampled"],
                    round(measured["seconds"], 2),
                    round(measured["first_evaluation_seconds"], 2),
                    round(peak_gib, 2),
                    f"{measured['import_seconds']['banditgate']:.1f}, {measured['import_seconds']['evidently']:.1f}",
                ]
            ],
        )
    )
    share = measured["phases_profiled_seconds"]
    print()
    print(
        table(
            ["phase (under cProfile)", "seconds", "share"],
            [[p, round(s, 2), f"{100 * s / share['total']:.0f}%"] for p, s in share.items() if p != "total"],
        )
    )
    print(f"\ntarget <= {TARGET_SECONDS:g} s: {'met' if met else 'MISSED'}")
    if not met or args.profile:
        print(top25)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
