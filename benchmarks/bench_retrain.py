"""Retraining on 1,000,000 logged decisions: wall time and peak memory of `retrain` (DESIGN.md section 5).

What is measured
    One call of :func:`banditgate.pipelines.retrain.retrain` on a SQLite ledger holding 1,000,000 matured
    decisions of the simulated payment world (10 actions; 22 context and 9 action features, plus the action
    id), logged by a uniform generation 0 through the real :class:`~banditgate.service.decider.Decider`:
    reading the matured log, fitting LightGBM (100 trees), choosing SquareCB's gamma, the off-policy report
    on up to 50,000 held-out decisions (every candidate action scored), the artifact and the registration.
    It runs in a child process, so the peak resident memory reported is the retraining's own.

How
    The ledger is built once and cached under benchmarks/.cache/ (about 3 GB of SQLite; building takes
    several minutes); later runs reuse it. ``--decisions`` changes the size (the cache is per size).

Target: <= 90 s and <= 4 GB on 2 cores.

Run: ``python benchmarks/bench_retrain.py [--decisions N]``; results in benchmarks/results/bench_retrain.json.
"""

from __future__ import annotations

import argparse
import json
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


def child(path: Path) -> None:
    """Run one retraining and print its timing as JSON (peak memory is read by the parent)."""
    from banditgate.pipelines.retrain import RetrainOptions, retrain

    engine = make_engine(f"sqlite:///{path}")
    sessions = make_sessionmaker(engine)
    options = RetrainOptions(
        window=timedelta(days=DAYS + 1), as_of=WORLD.epoch + timedelta(days=DAYS + 1), gamma_schedule="budget"
    )
    started = time.perf_counter()
    result = retrain(sessions, path.parent / "artifacts", "default", options)
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - started,
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
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return 0
    cache = BENCHMARKS / ".cache" / f"ledger-{args.decisions}"
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / "ledger.db"
    if not (cache / "complete").exists():
        print(f"building a ledger of {args.decisions:,} decisions in {cache} (once)")
        path.unlink(missing_ok=True)
        build_ledger(path, args.decisions)
        (cache / "complete").touch()
    process = subprocess.run([sys.executable, __file__, "--child", str(path)], capture_output=True, text=True)
    if process.returncode != 0:
        print(process.stderr, file=sys.stderr)
        return 1
    measured = json.loads(process.stdout.strip().splitlines()[-1])
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    results = {
        "benchmark": "bench_retrain",
        **environment(),
        "decisions": args.decisions,
        **measured,
        "peak_rss_gib": peak_gib,
        "target": {"seconds": 90, "peak_gib": 4, "met": measured["seconds"] <= 90 and peak_gib <= 4},
    }
    write_results("bench_retrain", results)
    print(
        table(
            ["decisions", "matured (train + held out)", "seconds", "peak RSS GiB", "target met"],
            [
                [
                    args.decisions,
                    measured["training_rows"] + measured["held_out_rows"],
                    round(measured["seconds"], 1),
                    round(peak_gib, 2),
                    results["target"]["met"],
                ]
            ],
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
