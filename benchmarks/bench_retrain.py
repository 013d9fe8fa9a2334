"""Retraining on 1,000,000 logged decisions: wall time and peak memory of `retrain` (docs/operations.md).

What is measured
    One call of :func:`banditgate.pipelines.retrain.retrain` on a SQLite ledger holding 1,000,000 matured
    decisions of the simulated payment world (10 actions; 22 context and 9 action features, plus the action
    id), logged by a uniform generation 0 through the real :class:`~banditgate.service.decider.Decider`:
    reading the matured log, fitting LightGBM (100 trees), choosing SquareCB's gamma and the floor with the
    retraining's default options, the off-policy report
    on up to 50,000 held-out decisions (every candidate action scored), the artifact and the registration.
    It runs in a child process, so the peak resident memory reported is the retraining's own.

How
    The ledger is built once and cached under benchmarks/.cache/ (about 3 GB of SQLite; building takes
    several minutes); later runs reuse it. ``--decisions`` changes the size (the cache is per size).

Target: <= 90 s and <= 4 GB on 2 cores.

The machine is shared: besides the wall time the results give the retraining's CPU time (user + system, both
cores; LightGBM trains on two threads) and the load average before and after, so runs on a busy machine can be
compared by CPU time. ``--profile FILE`` writes a cProfile of the retraining (then the timing includes the
profiler's overhead).

Run: ``python benchmarks/bench_retrain.py [--decisions N] [--profile FILE]``; results in
benchmarks/results/bench_retrain.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from banditgate.ledger import registry
from banditgate.ledger.db import make_engine, make_sessionmaker
from banditgate.ledger.migrate import upgrade
from banditgate.simulator import PaymentWorld

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS.parent))

from benchmarks.workload import environment, table, write_results  # noqa: E402
from tests.support.ledger_fill import fill  # noqa: E402

DAYS = 90
WORLD = PaymentWorld("none", seed=11)


def build_ledger(path: Path, decisions: int) -> None:
    engine = make_engine(f"sqlite:///{path}", sqlite_synchronous="NORMAL")
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    with sessions() as session, session.begin():
        registry.put_policy(session, "default", registry.PolicySpec(), actor="bench")
    per_day = decisions // DAYS
    started = time.time()
    for day in range(DAYS):
        fill(
            sessions,
            path.parent / "artifacts",
            WORLD,
            start=WORLD.epoch + timedelta(days=day),
            days=1,
            per_day=per_day,
            seed=day,
            prefix=f"d{day:03d}-",
        )
        print(f"  day {day + 1}/{DAYS} logged ({time.time() - started:.0f} s)", flush=True)
    engine.dispose()


def child(path: Path, profile: Path | None) -> None:
    """Run one retraining and print its timing as JSON (peak memory and CPU time are read by the parent)."""
    from banditgate.pipelines.retrain import RetrainOptions, retrain

    engine = make_engine(f"sqlite:///{path}")
    sessions = make_sessionmaker(engine)
    # The defaults a new user gets (gamma and floor chosen from the evidence), over the whole ledger.
    options = RetrainOptions(window=timedelta(days=DAYS + 1), as_of=WORLD.epoch + timedelta(days=DAYS + 1))
    if profile is not None:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.perf_counter()
    result = retrain(sessions, path.parent / "artifacts", "default", options)
    seconds = time.perf_counter() - started
    if profile is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "training_rows": result.training_rows,
                "held_out_rows": result.held_out_rows,
                "evaluated": result.ope_report["n"],
                "generation": result.generation.number,
                "candidate_dr": result.ope_report["policies"]["candidate"]["estimates"]["dr"]["value"],
                "uniform_dr": result.ope_report["policies"]["uniform"]["estimates"]["dr"]["value"],
            }
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--profile", type=Path, help="write a cProfile of the retraining to this file")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.profile)
        return 0
    cache = BENCHMARKS / ".cache" / f"ledger-{args.decisions}"
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / "ledger.db"
    if not (cache / "complete").exists():
        print(f"building a ledger of {args.decisions:,} decisions in {cache} (once)")
        path.unlink(missing_ok=True)
        build_ledger(path, args.decisions)
        (cache / "complete").touch()
    load_before = os.getloadavg()
    command = [sys.executable, __file__, "--child", str(path)]
    if args.profile:
        command += ["--profile", str(args.profile.resolve())]
    process = subprocess.run(command, capture_output=True, text=True)
    load_after = os.getloadavg()
    if process.returncode != 0:
        print(process.stderr, file=sys.stderr)
        return 1
    measured = json.loads(process.stdout.strip().splitlines()[-1])
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_gib = usage.ru_maxrss / 1024**2
    results = {
        "benchmark": "bench_retrain",
        **environment(),
        "decisions": args.decisions,
        **measured,
        "peak_rss_gib": peak_gib,
        # The child's whole life (imports and opening the ledger included), on both cores.
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "profiled": args.profile is not None,
        "target": {"seconds": 90, "peak_gib": 4, "met": measured["seconds"] <= 90 and peak_gib <= 4},
    }
    write_results("bench_retrain", results)
    print(
        table(
            [
                "decisions",
                "matured (train + held out)",
                "seconds",
                "CPU s",
                "load 1m before/after",
                "peak RSS GiB",
                "target met",
            ],
            [
                [
                    args.decisions,
                    measured["training_rows"] + measured["held_out_rows"],
                    round(measured["seconds"], 1),
                    round(results["cpu_seconds"], 1),
                    f"{load_before[0]:.1f} / {load_after[0]:.1f}",
                    round(peak_gib, 2),
                    results["target"]["met"],
                ]
            ],
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
