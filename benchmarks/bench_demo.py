"""``banditgate demo`` on its defaults: wall time against its five-minute target, CPU time, where the time goes.

Runs ``python -m banditgate.service.cli demo`` (the README's first command) in a temporary folder, as a
subprocess, and reads its ``report.json``: wall and CPU seconds of the run, the wall seconds of each stage
(traffic through the service, gate evaluations, retraining, the candidates' true values, promotions), the
load average at the end, and the gate's verdicts. The whole command's wall time (start-up, imports and the
report's charts included) is measured from outside. The run is mostly one thread, so on a busy machine its CPU
time is the better estimate of its wall time on a quiet one.

    python benchmarks/bench_demo.py                 # the defaults: 60 days
    python benchmarks/bench_demo.py --days 90       # a longer run

Results go to ``benchmarks/results/bench_demo.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.workload import environment, table, write_results

TARGET_SECONDS = 300.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=None, help="simulated days (default: the command's)")
    parser.add_argument("--seed", type=int, default=None, help="seed (default: the command's)")
    args = parser.parse_args()
    command = [sys.executable, "-m", "banditgate.service.cli", "demo"]
    for option, value in (("--days", args.days), ("--seed", args.seed)):
        if value is not None:
            command += [option, str(value)]
    with tempfile.TemporaryDirectory(prefix="bg-bench-demo-") as folder:
        out = Path(folder) / "demo"
        load_before = os.getloadavg()
        started = time.perf_counter()
        children = os.times()
        completed = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True)
        wall = time.perf_counter() - started
        after = os.times()
        if completed.returncode != 0:
            print(completed.stdout[-3000:], completed.stderr[-3000:], sep="\n")
            return 1
        report = json.loads((out / "report.json").read_text())
    cpu = (after.children_user - children.children_user) + (after.children_system - children.children_system)
    promotions = report["promotions"]
    results = {
        "benchmark": "bench_demo",
        **environment(),
        "command": " ".join(command[2:]),
        "days": report["days"],
        "decisions_per_day": report["decisions_per_day"],
        "decisions": report["decisions"],
        "command_wall_seconds": wall,
        "command_cpu_seconds": cpu,
        "run_wall_seconds": report["wall_seconds"],
        "run_cpu_seconds": report["cpu_seconds"],
        "stage_seconds": report["stage_seconds"],
        "load_average_before": list(load_before),
        "load_average_after": report["load_average"],
        "gate_verdicts": len(promotions),
        "promoted": sum(p["allowed"] for p in promotions),
        "target_seconds": TARGET_SECONDS,
    }
    write_results("bench_demo", results)
    rows = [
        ["command (wall)", f"{wall:.1f}"],
        ["command (CPU, user + system)", f"{cpu:.1f}"],
        ["run inside the command (wall)", f"{report['wall_seconds']:.1f}"],
        *([f"  {stage}", f"{seconds:.1f}"] for stage, seconds in report["stage_seconds"].items()),
    ]
    print(table(["", "seconds"], rows))
    print(
        f"\n{report['days']} days x ~{report['decisions_per_day']} payments: {report['decisions']:,} decisions, "
        f"{len(promotions)} gate verdicts ({results['promoted']} promoted); load average before "
        f"{load_before[0]:.1f}, after {report['load_average'][0]:.1f}; target {TARGET_SECONDS:.0f} s wall"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
