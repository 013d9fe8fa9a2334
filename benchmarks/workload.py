"""Shared pieces of the benchmarks: synthetic payment traffic, a ledger with a trained policy, run metadata.

Everything is generated from a seed, so two runs of a benchmark measure the same work. Nothing is
downloaded: the oracle is trained here on synthetic data.

The feature catalogue mimics what a payment gateway sends: 21 context features (numbers, categories and
flags) and 8 action features. With the action id that makes the 30 model columns of the latency target
(docs/operations.md, "Performance targets").
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from banditgate.ledger.db import make_engine, make_sessionmaker
from banditgate.ledger.migrate import upgrade
from banditgate.ledger.registry import (
    PolicySpec,
    deploy_generation,
    put_policy,
    register_generation,
    store_artifact,
)
from banditgate.policies.actions import Action
from banditgate.policies.oracles import LightGBMOracle, records_to_frame

BENCHMARKS_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCHMARKS_DIR.parent
RESULTS_DIR = BENCHMARKS_DIR / "results"

Generator = Callable[[np.random.Generator], Any]


def _choice(values: list[Any], weights: list[float] | None = None) -> Generator:
    p = None if weights is None else np.asarray(weights) / np.sum(weights)
    return lambda rng: values[int(rng.choice(len(values), p=p))]


#: Context features in the order a gateway would typically send them; the first ten form the HTTP body.
CONTEXT_FEATURES: dict[str, Generator] = {
    "amount_eur": lambda rng: round(float(rng.lognormal(3.5, 1.2)), 2),
    "currency": _choice(["EUR", "USD", "GBP", "SEK", "PLN"], [6, 2, 1, 0.5, 0.5]),
    "issuer_country": _choice(["NL", "DE", "FR", "GB", "US", "BE", "ES", "IT", "SE", "PL", "BR", "IN"]),
    "card_brand": _choice(["visa", "mastercard", "amex", "maestro", "cb"], [5, 4, 1, 1, 1]),
    "card_type": _choice(["credit", "debit", "prepaid"], [5, 4, 1]),
    "mcc": _choice(["5411", "5812", "5999", "4111", "7011", "5732", "5691", "4814", "7995", "5045"]),
    "hour": lambda rng: int(rng.integers(0, 24)),
    "is_recurring": lambda rng: bool(rng.random() < 0.2),
    "shopper_interaction": _choice(["ecommerce", "contauth", "moto"], [8, 2, 0.5]),
    "retry_count": lambda rng: int(rng.poisson(0.3)),
    "day_of_week": lambda rng: int(rng.integers(0, 7)),
    "device": _choice(["ios", "android", "desktop", "unknown"]),
    "merchant_country": _choice(["NL", "DE", "FR", "GB", "US"]),
    "is_cross_border": lambda rng: bool(rng.random() < 0.3),
    "bin_risk_score": lambda rng: round(float(rng.beta(2, 8)), 4),
    "customer_age_days": lambda rng: int(rng.exponential(400)),
    "declines_24h": lambda rng: int(rng.poisson(0.2)),
    "three_ds_version": _choice(["2.1", "2.2", "none"], [3, 5, 2]),
    "wallet": _choice(["none", "applepay", "googlepay"], [7, 2, 1]),
    "is_tokenised": lambda rng: bool(rng.random() < 0.4),
    "amount_in_issuer_currency": lambda rng: bool(rng.random() < 0.7),
}

#: Action features; the first two are sent in the HTTP body.
ACTION_FEATURES: dict[str, Generator] = {
    "fee_bps": lambda rng: int(rng.integers(5, 40)),
    "uses_3ds": lambda rng: bool(rng.random() < 0.5),
    "acquirer": _choice(["acq_nl", "acq_de", "acq_us", "acq_gb"]),
    "network_token": lambda rng: bool(rng.random() < 0.5),
    "retry_delay_s": lambda rng: int(rng.choice([0, 0, 5, 60])),
    "reformat": lambda rng: bool(rng.random() < 0.3),
    "hist_auth_rate": lambda rng: round(float(rng.beta(18, 3)), 4),
    "latency_ms": lambda rng: int(rng.integers(80, 900)),
}

#: Ten interventions (combinations count as one action).
ACTION_IDS = [
    "route_nl",
    "route_de",
    "route_us",
    "route_nl+3ds",
    "route_de+3ds",
    "route_nl+retry",
    "route_de+retry",
    "route_nl+token",
    "route_us+token",
    "route_nl+reformat",
]


@dataclass(frozen=True)
class Shape:
    """How many context and action features a workload uses (a prefix of the catalogues above)."""

    context_features: int = 21
    action_features: int = 8
    actions: int = 10

    @property
    def model_columns(self) -> int:
        return self.context_features + self.action_features + 1  # + the action id


def make_context(rng: np.random.Generator, shape: Shape) -> dict[str, Any]:
    names = list(CONTEXT_FEATURES)[: shape.context_features]
    return {name: CONTEXT_FEATURES[name](rng) for name in names}


def make_actions(rng: np.random.Generator, shape: Shape) -> list[dict[str, Any]]:
    """Candidate actions as the API takes them: ``{"id": ..., "features": {...}}``."""
    names = list(ACTION_FEATURES)[: shape.action_features]
    return [
        {"id": action_id, "features": {name: ACTION_FEATURES[name](rng) for name in names}}
        for action_id in ACTION_IDS[: shape.actions]
    ]


def _reward_probability(context: dict[str, Any], action: dict[str, Any]) -> float:
    """A made-up but learnable authorisation model: each action suits some transactions better."""
    features = action["features"]
    logit = 1.5 - 0.002 * float(context.get("amount_eur", 0.0)) - 3.0 * float(context.get("bin_risk_score", 0.0))
    if "3ds" in action["id"]:
        logit += 0.8 if context.get("issuer_country") in ("NL", "GB", "FR") else -0.6
    if "retry" in action["id"]:
        logit += 0.5 * min(2, int(context.get("retry_count", 0))) - 0.2
    if "token" in action["id"]:
        logit += 0.6 if context.get("card_brand") in ("visa", "mastercard") else -0.3
    if action["id"].startswith("route_us"):
        logit += 0.7 if context.get("issuer_country") == "US" else -0.4
    logit -= 0.01 * float(features.get("fee_bps", 0))
    logit += 0.5 * float(features.get("hist_auth_rate", 0.8))
    return 1.0 / (1.0 + np.exp(-logit))


def train_oracle(shape: Shape, rows: int, num_boost_round: int = 100, seed: int = 0) -> LightGBMOracle:
    """A LightGBM oracle fitted on ``rows`` uniformly-logged synthetic decisions of the given shape."""
    rng = np.random.default_rng(seed)
    contexts, chosen, rewards = [], [], []
    for _ in range(rows):
        context = make_context(rng, shape)
        actions = make_actions(rng, shape)
        action = actions[int(rng.integers(len(actions)))]
        contexts.append(context)
        chosen.append(Action(action["id"], action["features"]))
        rewards.append(float(rng.random() < _reward_probability(context, action)))
    oracle = LightGBMOracle(num_boost_round=num_boost_round, seed=seed)
    return oracle.fit(records_to_frame(contexts, chosen), np.asarray(rewards))


@dataclass(frozen=True)
class Ledger:
    database_url: str
    artifact_dir: Path
    policy: str
    generation: int
    model_sha256: str


def deploy_trained_policy(
    database_url: str, artifact_dir: Path, policy: str, oracle: LightGBMOracle, floor: float = 0.01
) -> Ledger:
    """Migrate a fresh ledger, create ``policy`` (SquareCB), and deploy ``oracle`` as its generation 1.

    This is the path the retraining job and a promotion take, through the registry's public functions.
    """
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        sessions = make_sessionmaker(engine)
        spec = PolicySpec(exploration="squarecb", exploration_params={"gamma": 100.0}, floor=floor)
        with sessions.begin() as session:
            put_policy(session, policy, spec, actor="benchmark", reason="benchmark set-up")
        path, sha256 = store_artifact(artifact_dir, policy, 1, oracle.to_bytes())
        with sessions.begin() as session:
            generation = register_generation(
                session,
                policy,
                artifact_path=path,
                artifact_sha256=sha256,
                oracle=oracle.kind,
                oracle_params=oracle.hyperparameters(),
                exploration="squarecb",
                exploration_params={"gamma": 100.0},
                row_counts={"synthetic": True},
            )
            deploy_generation(session, policy, generation.number, actor="benchmark", reason="benchmark set-up")
            number = generation.number
    finally:
        engine.dispose()
    return Ledger(database_url, artifact_dir, policy, number, sha256)


def percentiles_us(samples_ns: np.ndarray) -> dict[str, float]:
    """p50 / p90 / p99 / p99.9 / max / mean of nanosecond samples, in microseconds."""
    us = samples_ns.astype(np.float64) / 1000.0
    return {
        "n": int(us.size),
        "mean": float(us.mean()),
        "p50": float(np.percentile(us, 50)),
        "p90": float(np.percentile(us, 90)),
        "p99": float(np.percentile(us, 99)),
        "p99_9": float(np.percentile(us, 99.9)),
        "max": float(us.max()),
    }


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of all cores since boot, from ``/proc/stat`` (zeros where it is missing)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return (total - idle) / _CLOCK_TICKS, total / _CLOCK_TICKS


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads), from ``/proc/<pid>/stat``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime


def child_pids(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (a server's decision process, for instance), from ``/proc``."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            children = [int(child) for child in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
        for child in children:
            found += [child, *child_pids(child)]
    return found


def background_cores(seconds: float = 1.0) -> float:
    """How many cores the machine kept busy over ``seconds`` (before a benchmark starts: other people's work)."""
    busy0, _ = machine_cpu_seconds()
    own0 = process_cpu_seconds(os.getpid())
    time.sleep(seconds)
    busy1, _ = machine_cpu_seconds()
    own1 = process_cpu_seconds(os.getpid())
    return max(0.0, (busy1 - busy0) - (own1 - own0)) / seconds


def wait_for_quiet(max_wait: float, threshold: float = 0.15) -> float:
    """Wait up to ``max_wait`` seconds for other processes to use under ``threshold`` cores; return the last
    reading. Benchmarks on a 2-core machine are meaningless while a test suite runs next to them."""
    deadline = time.monotonic() + max_wait
    load = background_cores()
    if load >= threshold and max_wait > 0:
        print(f"other processes keep {load:.2f} cores busy; waiting up to {max_wait:.0f} s for quiet")
        while load >= threshold and time.monotonic() < deadline:
            load = background_cores(2.0)
    if load >= threshold:
        print(f"WARNING: other processes keep {load:.2f} of {os.cpu_count()} cores busy: the numbers will be noisy")
    return load


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def code_state() -> dict[str, Any]:
    """The git revision and a hash of the content of ``banditgate/`` (committed or not), to compare the code
    at the start of a run with the code at its end."""
    digest = hashlib.sha256()
    for path in sorted((REPO_DIR / "banditgate").rglob("*.py")):
        digest.update(str(path.relative_to(REPO_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    return {**_git_revision(), "banditgate_content_sha256": digest.hexdigest()}


def record_code(results: dict[str, Any], loaded: dict[str, Any], loaded_after: dict[str, Any] | None = None) -> None:
    """Put the code measured in ``results["git"]`` (an :func:`environment` dict).

    ``loaded`` is :func:`code_state` just before the measured code was imported (this process's imports, or a
    server's start-up), ``loaded_after`` just after. Other people may edit the working tree while a
    benchmark runs; edits after the import do not change what runs, but an edit inside that window does, and
    then the run is flagged.
    """
    if loaded_after is not None and loaded_after["banditgate_content_sha256"] != loaded["banditgate_content_sha256"]:
        print("WARNING: banditgate/ changed while the measured code was loading; the version measured is unknown")
        results["git"] = {"before_loading": loaded, "after_loading": loaded_after, "changed_while_loading": True}
    else:
        results["git"] = loaded


def _git_revision() -> dict[str, Any]:
    """The commit measured and, if ``banditgate/`` differs from it, which tracked files and a hash of the diff."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_DIR, capture_output=True, text=True, check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        modified = git("diff", "--name-only", "HEAD", "--", "banditgate").split()
        diff = git("diff", "HEAD", "--", "banditgate")
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None}
    return {
        "commit": commit,
        "banditgate_modified_files": modified,
        "banditgate_diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff else None,
    }


def environment(extra_versions: dict[str, str] | None = None) -> dict[str, Any]:
    """Date, machine, Python and library versions, and the git revision measured."""
    packages = ["banditgate", "lightgbm", "numpy", "fastapi", "starlette", "pydantic", "uvicorn", "sqlalchemy"]
    packages += ["uvloop", "httptools"]
    versions: dict[str, str] = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    import sqlite3

    versions["sqlite"] = sqlite3.sqlite_version
    versions.update(extra_versions or {})
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpu_model": _cpu_model(),
            "cpu_count": os.cpu_count(),
            "memory_gib": _memory_gib(),
            "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        },
        "python": sys.version.split()[0],
        "versions": versions,
        "git": _git_revision(),
    }


def write_results(name: str, results: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/<name>.json`` and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    return path


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
