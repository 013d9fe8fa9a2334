"""How much of the achievable gain each learner captures on the simulated payment world, with delayed rewards.

What is measured
    Every learner serves the same simulated stream: the transactions of ``PaymentWorld(scenario, seed=seed)``
    drawn with traffic seed ``seed``, ``--days`` days of about ``--per-day`` decisions from the world's epoch.
    The outcome of an action is a pure function of (transaction, action): the simulator draws one uniform
    per transaction and authorises when it is below the action's true probability, so two learners that pick
    the same action see the same reward (common random numbers). A learner's reward for a decision is the
    authorisation, which arrives 0.2-5 s after the decision (its simulated delay); a reward that has not
    arrived by the time a learner updates is not used.

    The score of a decision is the true expected authorisation of the distribution the learner served,
    ``sum_a p(a|x) P(auth|x, a)`` (no outcome noise), next to uniform random over the eligible actions and the
    best eligible action on the same transaction. Over days ``--first-day``..``--last-day`` (counted from 1;
    default 8-30) a run's **fraction of the achievable gain** is
    ``(sum policy - sum uniform) / (sum best - sum uniform)``: 0 for uniform random, 1 for the bound. Its 95%
    interval is a percentile bootstrap over days (days of the range resampled with replacement, 2,000 times):
    a learner serves a fixed model for a day, so the decisions of a day are not independent. The mean over
    seeds resamples the days of each seed independently.

Learners
    * ``uniform``, ``best``: computed (0 and 1 by construction; sanity checks of the harness).
    * ``banditgate``: banditgate's own path with the configuration a new user gets: the policy spec of
      ``PolicySettings().spec()`` (what ``banditgate serve`` creates) and ``RetrainOptions()``'s defaults (what
      ``banditgate retrain`` uses). The real :class:`~banditgate.service.decider.Decider` decides and its
      records are logged to a SQLite ledger with the rewards (observed and received at their simulated
      times); at each day's end ``retrain`` runs as of that moment (rewards received later are ignored) and
      the candidate is promoted. LightGBM oracles get ``num_threads=1`` (an oracle override: speed only).
    * ``epsilon-greedy``, ``softmax``: the same with the rule swapped (``epsilon`` 0.1, ``temperature`` 0.01:
      the oracle's predicted gaps between actions are about 0.01), the new user's floor and retraining.
    * ``squarecb-river``: the new user's policy with the River oracle (logistic regression, its defaults).
    * ``vw-online``: Vowpal Wabbit ``--cb_explore_adf --squarecb -q CA`` (defaults otherwise): the pmf of each
      decision from ``predict``, an action drawn from it with this benchmark's seeded generator, and each
      example learned as soon as its authorisation arrives (before any later decision).
    * ``vw-daily``: the same model serving without learning during a day; at the day's end it learns the
      logged decisions whose rewards have arrived by then.

    VW examples: the shared line in namespace ``C`` holds the context (strings as ``key=value`` indicators,
    numbers as ``key:value``, booleans as ``key:1``/``key:0``), one line per eligible action in namespace ``A``
    holds ``id=<action id>`` and the action's features encoded the same way; the label is on the chosen
    action's line, ``0:<cost>:<probability>`` with cost ``1 - authorised`` and the probability served.

``--set`` changes banditgate's configuration for tuning (typed by the field's default): ``policy.<field>`` sets a
field of the policy spec (``policy.floor=0.02``, ``policy.exploration_params.gamma=10``), ``retrain.<field>`` a
field of ``RetrainOptions`` (``retrain.gamma_schedule=sqrt``, ``retrain.window=7d``); ``learner:key=value`` sets it
for one learner only (``softmax:policy.exploration_params.temperature=0.005``). The JSON records the settings.

Time on this machine (2 cores, 2026-12-06, shared with other jobs: load average 10-13): a banditgate run of
30 days x 2,000 decisions takes about 2 minutes of CPU (most of it in its 29 retrainings on up to 22,400
rows, 10-50 s each in wall time) and took 13.5 minutes of wall time; a VW run about 20 s
of CPU (0.2-0.4 ms per decision), 2 minutes of wall time. The full matrix (5 scenarios x 3 seeds; banditgate
and both VW learners) is about 40 minutes of CPU: ``--jobs 2`` on an idle machine runs it in about 20.
``--resume`` continues an interrupted run; ``--summarise NAME`` prints a saved run's tables again.

Run: ``python benchmarks/learning.py [--learners banditgate,vw-online] [--scenarios none,concept] [--seeds 21]
[--days 30 --per-day 2000 --first-day 8] [--set retrain.gamma_schedule=sqrt] [--jobs 2] [--quick]``; results in
``benchmarks/results/<--name>.json`` and ``.png`` (default ``learning``; ``learning_quick`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from banditgate.simulator import PaymentWorld, TrafficBatch, Transaction

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.workload import RESULTS_DIR, environment, table, write_results

SCENARIOS = ("none", "covariate", "concept", "prior", "mixed")
SEEDS = (21, 22, 23)
COMPUTED = ("uniform", "best")
VW_LEARNERS = ("vw-online", "vw-daily")
#: banditgate-path learners: the new user's policy spec with these fields replaced.
BANDITGATE_LEARNERS: dict[str, dict[str, Any]] = {
    "banditgate": {},
    "epsilon-greedy": {"exploration": "epsilon_greedy", "exploration_params": {"epsilon": 0.1}},
    "softmax": {"exploration": "softmax", "exploration_params": {"temperature": 0.01}},
    "squarecb-river": {"oracle": "river", "oracle_params": {}},
}
LEARNERS = (*COMPUTED, *BANDITGATE_LEARNERS, *VW_LEARNERS)
DEFAULT_LEARNERS = ("uniform", "best", "banditgate", "vw-online", "vw-daily")
VW_ARGUMENTS = "--cb_explore_adf --squarecb -q CA"
BOOTSTRAP = 2000
POLICY = "default"


@dataclass(frozen=True)
class Stream:
    """The traffic every learner serves: a world and its traffic seed (the same number), days and volume."""

    scenario: str
    seed: int
    days: int
    per_day: int

    def world(self) -> PaymentWorld:
        return PaymentWorld(self.scenario, seed=self.seed)

    def batches(self, world: PaymentWorld) -> Iterable[TrafficBatch]:
        return world.traffic_batches(world.epoch, self.days, self.per_day, self.seed)


@dataclass
class Run:
    """One learner on one stream: per day, the decisions and the sums of the true expected authorisation of what
    it served, of uniform random and of the best action; a fingerprint of the transactions and outcome noise it
    was given; the wall and CPU time (of its process) and learner-specific notes (e.g. each generation's gamma)."""

    learner: str
    scenario: str
    seed: int
    decisions: list[int] = field(default_factory=list)
    policy: list[float] = field(default_factory=list)
    uniform: list[float] = field(default_factory=list)
    best: list[float] = field(default_factory=list)
    stream_sha256: str = ""
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    notes: list[dict[str, Any]] = field(default_factory=list)
    configuration: dict[str, Any] = field(default_factory=dict)


# -- banditgate's configuration -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One ``--set``: for ``learner`` (None: every banditgate learner), ``target`` (``policy`` or ``retrain``),
    the dotted field path and the raw value."""

    learner: str | None
    target: str
    path: tuple[str, ...]
    raw: str


def parse_setting(text: str) -> Setting:
    """``[learner:](policy|retrain).field[.key]=value``, checked for shape (values are typed when applied)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--set {text!r}: expected key=value")
    learner, colon, dotted = key.rpartition(":")
    if colon and learner not in BANDITGATE_LEARNERS:
        raise ValueError(f"--set {text!r}: {learner!r} is not a banditgate learner ({', '.join(BANDITGATE_LEARNERS)})")
    target, *path = dotted.split(".")
    if target not in ("policy", "retrain") or not path or not all(path):
        raise ValueError(f"--set {text!r}: the key must be policy.<field> or retrain.<field>")
    if target == "retrain" and path[0] == "as_of":
        raise ValueError("--set retrain.as_of: the benchmark retrains as of each day's end")
    return Setting(learner or None, target, tuple(path), raw)


def typed(raw: str, like: Any, name: str) -> Any:
    """``raw`` converted to the type of the field's default ``like`` (JSON for dicts, None and unknown types;
    a bare word is a string). Durations are days (``7``, ``7d``) or hours (``36h``)."""
    if isinstance(like, bool):
        if raw.lower() in ("true", "1", "yes"):
            return True
        if raw.lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"{name}: expected true or false, got {raw!r}")
    if isinstance(like, timedelta):
        unit = {"h": timedelta(hours=1), "d": timedelta(days=1)}.get(raw[-1:])
        number = raw[:-1] if unit else raw
        try:
            return float(number) * (unit or timedelta(days=1))
        except ValueError:
            raise ValueError(f"{name}: expected a duration such as 14d or 36h, got {raw!r}") from None
    if isinstance(like, int | float):
        try:
            return int(raw) if isinstance(like, int) else float(raw)
        except ValueError:
            raise ValueError(f"{name}: expected a number, got {raw!r}") from None
    if isinstance(like, str):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def apply_settings(obj: Any, settings: Sequence[Setting], target: str) -> Any:
    """A copy of the dataclass ``obj`` with the settings for ``target`` applied (its own validation runs)."""
    names = {f.name for f in fields(obj)}
    changes: dict[str, Any] = {}
    for s in settings:
        if s.target != target:
            continue
        name, *rest = s.path
        if name not in names:
            raise ValueError(f"{target}.{name}: unknown field; known: {', '.join(sorted(names))}")
        current = changes.get(name, getattr(obj, name))
        label = ".".join((target, *s.path))
        if rest:
            if not isinstance(current, dict) or len(rest) != 1:
                raise ValueError(f"{label}: only a key of a mapping field can be set this way")
            like = current.get(rest[0])
            changes[name] = {**current, rest[0]: typed(s.raw, like, label)}
        else:
            changes[name] = typed(s.raw, current, label)
    return replace(obj, **changes) if changes else obj


def banditgate_configuration(learner: str, settings: Sequence[Setting]) -> tuple[Any, Any]:
    """The policy spec and retraining options of a banditgate learner: the new user's, the learner's rule or
    oracle, then the ``--set`` values. LightGBM oracles train on one thread."""
    from banditgate.pipelines.retrain import RetrainOptions
    from banditgate.service.settings import PolicySettings

    mine = [s for s in settings if s.learner in (None, learner)]
    spec = apply_settings(replace(PolicySettings().spec(), **BANDITGATE_LEARNERS[learner]), mine, "policy")
    options = RetrainOptions()
    if spec.oracle == "lightgbm" and "num_threads" not in options.oracle_overrides:
        options = replace(options, oracle_overrides={**options.oracle_overrides, "num_threads": 1})
    return spec, apply_settings(options, mine, "retrain")


def describe(obj: Any) -> dict[str, Any]:
    """A dataclass's fields as JSON-friendly values."""
    plain = int | float | str | bool | dict | type(None)
    return {k: v if isinstance(v, plain) else str(v) for k, v in asdict(obj).items()}


# -- learners -----------------------------------------------------------------------------------------------


class Learner:
    """Serves a day's transactions (returning the (n, catalogue) matrix of served probabilities) and learns at
    the day's end."""

    def serve(self, batch: TrafficBatch) -> np.ndarray:
        raise NotImplementedError

    def end_of_day(self, as_of: datetime) -> None:
        """Learn what has arrived by ``as_of`` (not called after the last day)."""

    def close(self) -> None:
        """Release files and handles."""


class Computed(Learner):
    """Uniform random over the eligible actions, or the best eligible action."""

    def __init__(self, name: str) -> None:
        self.name = name

    def serve(self, batch: TrafficBatch) -> np.ndarray:
        if self.name == "uniform":
            return batch.eligible / batch.eligible.sum(axis=1, keepdims=True)
        matrix = np.zeros(batch.eligible.shape)
        matrix[np.arange(len(batch)), batch.best_actions()] = 1.0
        return matrix


class Banditgate(Learner):
    """banditgate's own path: Decider -> SQLite ledger (decisions and rewards with their times) -> ``retrain``
    as of each day's end -> ``promote``."""

    def __init__(self, spec: Any, options: Any, notes: list[dict[str, Any]]) -> None:
        from banditgate.ledger import registry
        from banditgate.ledger.db import make_engine, make_sessionmaker
        from banditgate.ledger.migrate import upgrade
        from banditgate.service.decider import Decider
        from banditgate.service.policy_cache import PolicyCache

        self.folder = Path(tempfile.mkdtemp(prefix="bg-learning-"))
        self.artifacts = self.folder / "artifacts"
        self.engine = make_engine(f"sqlite:///{self.folder / 'ledger.db'}", sqlite_synchronous="OFF")
        upgrade(self.engine)
        self.sessions = make_sessionmaker(self.engine)
        with self.sessions() as session, session.begin():
            registry.put_policy(session, POLICY, spec, actor="benchmark")
        self.cache = PolicyCache(self.sessions, self.artifacts)
        self.cache.refresh()
        self.decider = Decider(self.cache, POLICY)
        self.options = options
        self.notes = notes

    def serve(self, batch: TrafficBatch) -> np.ndarray:
        from sqlalchemy import insert

        from banditgate.ledger.models import Decision, Reward

        matrix = np.zeros(batch.eligible.shape)
        decisions, rewards = [], []
        for tx in batch.transactions():
            body = tx.decision_request()
            record, _ = self.decider.decide(body["context"], body["actions"], tx.id, POLICY, now=tx.t)
            decisions.append(record.as_row())
            for action, p in zip(record.actions, record.probabilities, strict=True):
                matrix[tx.row, batch.catalogue.position(action["id"])] = p
            for event in tx.outcome(record.action_id).events:
                rewards.append(
                    {
                        "decision_id": tx.id,
                        "kind": event.kind,
                        "value": event.value,
                        "revision": 1,
                        "observed_at": event.observed_at,
                        "received_at": event.observed_at,
                    }
                )
        with self.sessions() as session, session.begin():
            for rows, model in ((decisions, Decision), (rewards, Reward)):
                for i in range(0, len(rows), 5000):
                    session.execute(insert(model), rows[i : i + 5000])
        return matrix

    def end_of_day(self, as_of: datetime) -> None:
        from banditgate.ledger.promotion import promote
        from banditgate.pipelines.retrain import NotEnoughData, retrain

        started = time.perf_counter()
        try:
            result = retrain(self.sessions, self.artifacts, POLICY, replace(self.options, as_of=as_of))
        except NotEnoughData as exc:
            self.notes.append({"as_of": as_of.isoformat(), "not_retrained": str(exc)})
            return
        generation = result.generation
        with self.sessions() as session, session.begin():
            promote(session, POLICY, generation.number, actor="benchmark", reason="daily retraining")
        self.cache.refresh()
        self.notes.append(
            {
                "as_of": as_of.isoformat(),
                "generation": generation.number,
                "exploration_params": generation.exploration_params,
                "training_rows": result.training_rows,
                "seconds": round(time.perf_counter() - started, 2),
            }
        )

    def close(self) -> None:
        self.engine.dispose()
        shutil.rmtree(self.folder, ignore_errors=True)


def vw_token(key: str, value: Any) -> str:
    """A VW feature: ``key=value`` for strings, ``key:number`` for numbers and booleans (1/0)."""
    if isinstance(value, bool):
        return f"{key}:{int(value)}"
    if isinstance(value, int | float):
        return f"{key}:{value}"
    text = str(value).replace(" ", "_").replace(":", "_").replace("|", "_")
    return f"{key}={text}"


class VowpalWabbit(Learner):
    """Vowpal Wabbit's contextual bandit with SquareCB, learning each reward as it arrives (``online``) or at
    the day's end from the day's matured logs."""

    def __init__(self, seed: int, online: bool) -> None:
        import vowpalwabbit

        self.workspace = vowpalwabbit.Workspace(f"{VW_ARGUMENTS} --quiet")
        self.online = online
        self.rng = np.random.default_rng([seed, 0xB0])
        self.pending: list[tuple[datetime, int, list[str]]] = []  # (reward arrival, sequence, labelled example)
        self.sequence = 0
        self.action_lines: dict[str, str] = {}

    def _lines(self, tx: Transaction) -> list[str]:
        shared = "shared |C " + " ".join(vw_token(k, v) for k, v in tx.context.items())
        lines = [shared]
        for action in tx.actions():
            line = self.action_lines.get(action.id)
            if line is None:
                tokens = [vw_token("id", action.id), *(vw_token(k, v) for k, v in action.features.items())]
                line = self.action_lines[action.id] = "|A " + " ".join(tokens)
            lines.append(line)
        return lines

    def _learn_until(self, t: datetime) -> None:
        while self.pending and self.pending[0][0] <= t:
            self.workspace.learn(heapq.heappop(self.pending)[2])

    def serve(self, batch: TrafficBatch) -> np.ndarray:
        matrix = np.zeros(batch.eligible.shape)
        for tx in batch.transactions():
            if self.online:
                self._learn_until(tx.t)
            lines = self._lines(tx)
            pmf = np.asarray(self.workspace.predict(lines), dtype=float)
            pmf /= pmf.sum()
            index = min(int(np.searchsorted(np.cumsum(pmf), self.rng.random(), side="right")), len(pmf) - 1)
            matrix[tx.row, [batch.catalogue.position(a) for a in tx.eligible]] = pmf
            authorisation = tx.outcome(tx.eligible[index]).events[0]
            labelled = list(lines)
            labelled[1 + index] = f"0:{1.0 - authorisation.value}:{pmf[index]} {lines[1 + index]}"
            heapq.heappush(self.pending, (authorisation.observed_at, self.sequence, labelled))
            self.sequence += 1
        return matrix

    def end_of_day(self, as_of: datetime) -> None:
        self._learn_until(as_of)

    def close(self) -> None:
        self.workspace.finish()


def vw_available() -> bool:
    try:
        import vowpalwabbit  # noqa: F401
    except ImportError:
        return False
    return True


def make_learner(name: str, stream: Stream, settings: Sequence[Setting], run: Run) -> Learner:
    if name in COMPUTED:
        return Computed(name)
    if name in VW_LEARNERS:
        run.configuration = {"arguments": VW_ARGUMENTS, "cost": "1 - authorised", "version": _vw_version()}
        return VowpalWabbit(stream.seed, online=name == "vw-online")
    spec, options = banditgate_configuration(name, settings)
    run.configuration = {"policy": describe(spec), "retrain": describe(options)}
    return Banditgate(spec, options, run.notes)


def _vw_version() -> str:
    from importlib import metadata

    return metadata.version("vowpalwabbit")


def run_learner(name: str, stream: Stream, settings: Sequence[Setting] = ()) -> Run:
    """Serve the stream with one learner, day by day, and score what it served against the world's truth."""
    started, cpu = time.perf_counter(), time.process_time()
    world = stream.world()
    run = Run(name, stream.scenario, stream.seed)
    learner = make_learner(name, stream, settings, run)
    digest = hashlib.sha256()
    try:
        for day, batch in enumerate(stream.batches(world)):
            digest.update("\n".join(batch.ids).encode())
            digest.update(batch.p_authorisation.tobytes())
            digest.update(batch.noise.tobytes())
            matrix = learner.serve(batch)
            if not np.allclose(matrix.sum(axis=1), 1.0, atol=1e-6):
                raise AssertionError(f"{name}: served probabilities do not sum to 1 on day {day + 1}")
            uniform = batch.eligible / batch.eligible.sum(axis=1, keepdims=True)
            run.decisions.append(len(batch))
            run.policy.append(float(batch.expected_reward(matrix).sum()))
            run.uniform.append(float(batch.expected_reward(uniform).sum()))
            run.best.append(float(batch.p_authorisation[np.arange(len(batch)), batch.best_actions()].sum()))
            if day + 1 < stream.days:
                learner.end_of_day(world.epoch + timedelta(days=day + 1))
    finally:
        learner.close()
    run.stream_sha256 = digest.hexdigest()
    run.seconds, run.cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    return run


# -- scoring ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fraction:
    """A fraction of the achievable gain with its 95% bootstrap interval."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def gain_fraction(runs: Sequence[Run], first: int, last: int, reps: int = BOOTSTRAP, seed: int = 0) -> Fraction:
    """Mean over ``runs`` (one per seed) of the fraction of the gain over days ``first..last`` (from 1), with a
    percentile bootstrap over each run's days."""
    rng = np.random.default_rng(seed)
    point, samples = [], []
    for run in runs:
        days = slice(first - 1, last)
        gain = np.asarray(run.policy[days]) - np.asarray(run.uniform[days])
        room = np.asarray(run.best[days]) - np.asarray(run.uniform[days])
        point.append(gain.sum() / room.sum())
        picks = rng.integers(0, len(gain), size=(reps, len(gain)))
        samples.append(gain[picks].sum(axis=1) / room[picks].sum(axis=1))
    mean = np.mean(samples, axis=0)
    return Fraction(float(np.mean(point)), float(np.quantile(mean, 0.025)), float(np.quantile(mean, 0.975)))


def daily_fraction(run: Run) -> np.ndarray:
    """The fraction of the gain on each day."""
    return (np.asarray(run.policy) - np.asarray(run.uniform)) / (np.asarray(run.best) - np.asarray(run.uniform))


def plot(runs: Sequence[Run], first: int, path: Path, title: str) -> None:
    """Fraction of the gain per day per learner, the mean over the runs given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 5))
    for learner in [n for n in LEARNERS if any(r.learner == n for r in runs)]:
        curves = np.array([daily_fraction(r) for r in runs if r.learner == learner])
        days = np.arange(1, curves.shape[1] + 1)
        if learner in COMPUTED:
            axes.plot(days, curves.mean(axis=0), color="grey", linestyle="--", linewidth=1)
        else:
            axes.plot(days, curves.mean(axis=0), label=learner, marker=".")
    axes.axvline(first - 0.5, color="grey", linestyle=":", linewidth=1)
    axes.set_xlabel("day")
    axes.set_ylabel("fraction of the achievable gain (uniform 0, best 1)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# -- command line -------------------------------------------------------------------------------------------


def names(text: str, allowed: Sequence[str], what: str) -> list[str]:
    chosen = list(allowed) if text == "all" else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in allowed]
    if unknown or not chosen:
        raise ValueError(f"unknown {what} {', '.join(unknown) or '(none)'}; known: {', '.join(allowed)} or all")
    return chosen


def run_all(
    learners: Sequence[str],
    streams: Sequence[Stream],
    settings: Sequence[Setting],
    jobs: int,
    done: Callable[[Run], None],
    skip: Iterable[tuple[str, str, int]] = (),
) -> list[Run]:
    """Every learner on every stream, ``jobs`` processes at a time: stream by stream (so that an interrupted run
    leaves complete streams), the longest learners first within a stream."""
    order = {n: i for i, n in enumerate((*BANDITGATE_LEARNERS, *VW_LEARNERS, *COMPUTED))}
    skipped = set(skip)
    tasks = [(n, s) for s in streams for n in sorted(learners, key=order.__getitem__)]
    tasks = [(n, s) for n, s in tasks if (n, s.scenario, s.seed) not in skipped]
    runs = []
    if jobs == 1:
        for n, s in tasks:
            runs.append(run_learner(n, s, settings))
            done(runs[-1])
        return runs
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_learner, n, s, settings) for n, s in tasks]
        for future in as_completed(futures):
            runs.append(future.result())
            done(runs[-1])
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learners", default=",".join(DEFAULT_LEARNERS), help=f"of {', '.join(LEARNERS)}, or all")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="drift scenarios, or all")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="world and traffic seeds")
    parser.add_argument("--days", type=int, default=30, help="simulated days")
    parser.add_argument("--per-day", type=int, default=2000, help="decisions per day (on average over a week)")
    parser.add_argument("--first-day", type=int, default=8, help="first day scored (days count from 1)")
    parser.add_argument("--last-day", type=int, default=None, help="last day scored (default: --days)")
    parser.add_argument("--set", action="append", default=[], metavar="[LEARNER:]KEY=VALUE", dest="settings")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    parser.add_argument("--quick", action="store_true", help="seed 21, none and concept, 10 days x 1,000, from day 4")
    parser.add_argument("--name", default=None, help="results name (default: learning, or learning_quick)")
    parser.add_argument(
        "--resume", action="store_true", help="keep the runs already in the results file (same days, volume, --set)"
    )
    parser.add_argument("--summarise", metavar="NAME", help="only summarise benchmarks/results/NAME.json again")
    args = parser.parse_args(argv)
    if args.summarise:
        return resummarise(args.summarise)
    if args.quick:
        args.seeds, args.scenarios, args.days, args.per_day, args.first_day = "21", "none,concept", 10, 1000, 4
    try:
        learners = names(args.learners, LEARNERS, "learners")
        scenarios = names(args.scenarios, SCENARIOS, "scenarios")
        seeds = [int(s) for s in args.seeds.split(",")]
        settings = [parse_setting(s) for s in args.settings]
        for learner in learners:
            if learner in BANDITGATE_LEARNERS:
                banditgate_configuration(learner, settings)  # bad values fail now, not an hour in
    except ValueError as exc:
        parser.error(str(exc))
    last = args.last_day or args.days
    if not 1 <= args.first_day <= last <= args.days or args.per_day < 1 or args.jobs < 1 or min(seeds) < 0:
        parser.error("need 1 <= --first-day <= --last-day <= --days, --per-day >= 1, --jobs >= 1, seeds >= 0")
    if not vw_available() and any(n in VW_LEARNERS for n in learners):
        print("vowpalwabbit is not installed (pip install -e '.[bench]'): skipping " + ", ".join(VW_LEARNERS))
        learners = [n for n in learners if n not in VW_LEARNERS]
    name = args.name or ("learning_quick" if args.quick else "learning")
    streams = [Stream(sc, seed, args.days, args.per_day) for seed in seeds for sc in scenarios]
    meta = {
        "benchmark": "learning",
        **environment({"vowpalwabbit": _vw_version()} if vw_available() else None),
        "days": args.days,
        "per_day": args.per_day,
        "scored_days": [args.first_day, last],
        "interval": f"95% percentile bootstrap over the scored days ({BOOTSTRAP} resamples; seeds resampled apart)",
        "settings": args.settings,
        "vw_arguments": VW_ARGUMENTS,
    }

    finished: list[Run] = []
    path = RESULTS_DIR / f"{name}.json"
    if args.resume and path.exists():
        saved = json.loads(path.read_text())
        same = [saved.get(k) == meta[k] for k in ("days", "per_day", "settings")]
        if not all(same):
            parser.error(f"--resume: {path} was run with other days, volume or --set")
        wanted = {(n, st.scenario, st.seed) for n in learners for st in streams}
        finished = [Run(**r) for r in saved["runs"] if (r["learner"], r["scenario"], r["seed"]) in wanted]
        print(f"resuming: {len(finished)} runs kept from {path}")
    kept = list(finished)

    def done(run: Run) -> None:
        timing = f"{run.seconds:.0f} s ({run.cpu_seconds:.0f} s CPU)"
        print(f"  {run.learner} {run.scenario} seed {run.seed}: {timing}", flush=True)
        finished.append(run)
        write_results(name, {**meta, "partial": True, "runs": [asdict(r) for r in finished]})

    runs = run_all(learners, streams, settings, args.jobs, done, skip=[(r.learner, r.scenario, r.seed) for r in kept])
    finish(name, meta, kept + runs, args.first_day, last)
    return 0


def finish(name: str, meta: dict[str, Any], runs: Sequence[Run], first: int, last: int) -> None:
    """Print the tables, write the results with their summary and the plot."""
    report = summarise(runs, first, last)
    write_results(name, {**meta, "summary": report, "runs": [asdict(r) for r in runs]})
    streams = sum(len(seeds) for seeds in report["seeds"].values())
    complete = [r for r in runs if r.seed in report["seeds"].get(r.scenario, ())]
    plot(complete, first, RESULTS_DIR / f"{name}.png", f"mean over {streams} streams (scenario x seed)")


def resummarise(name: str) -> int:
    """Tables, summary and plot again from ``benchmarks/results/<name>.json`` (e.g. of an interrupted run)."""
    saved = json.loads((RESULTS_DIR / f"{name}.json").read_text())
    runs = [Run(**r) for r in saved.pop("runs")]
    saved.pop("summary", None)
    saved.pop("partial", None)
    finish(name, saved, runs, *saved["scored_days"])
    return 0


def summarise(runs: Sequence[Run], first: int, last: int) -> dict[str, Any]:
    """Print the tables and return them as JSON-friendly data.

    Only complete streams count (every learner of the runs on that scenario and seed), so the runs of an
    interrupted benchmark can be summarised too; a scenario's mean is over its complete seeds.
    """
    by = {(r.learner, r.scenario, r.seed): r for r in runs}
    learners = [n for n in LEARNERS if any(r.learner == n for r in runs)]
    scenarios = [sc for sc in SCENARIOS if any(r.scenario == sc for r in runs)]
    seeds: dict[str, list[int]] = {
        sc: sorted(seed for seed in {r.seed for r in runs} if all((n, sc, seed) in by for n in learners))
        for sc in scenarios
    }
    scenarios = [sc for sc in scenarios if seeds[sc]]
    seeds = {sc: seeds[sc] for sc in scenarios}
    for scenario in scenarios:
        for seed in seeds[scenario]:
            if len({by[(n, scenario, seed)].stream_sha256 for n in learners}) != 1:
                raise AssertionError(f"{scenario} seed {seed}: the learners were not given the same stream")
    report: dict[str, Any] = {"seeds": seeds, "mean": {}, "per_seed": {}, "ratio_to_vw": {}, "seconds": {}}
    rows = []
    for n in learners:
        cells = []
        for scenario in scenarios:
            fraction = gain_fraction([by[(n, scenario, seed)] for seed in seeds[scenario]], first, last)
            report["mean"].setdefault(n, {})[scenario] = asdict(fraction)
            cells.append(str(fraction))
        rows.append([n, *cells])
    counts = ", ".join(f"{sc} {len(seeds[sc])}" for sc in scenarios)
    print(f"\nfraction of the achievable gain, days {first}-{last}, mean over seeds ({counts}) [95% interval]")
    print(table(["learner", *scenarios], rows))

    def per_seed(n: str, scenario: str, seed: int) -> str:
        if seed not in seeds[scenario]:
            return "-"
        fraction = gain_fraction([by[(n, scenario, seed)]], first, last)
        report["per_seed"].setdefault(n, {}).setdefault(scenario, {})[str(seed)] = asdict(fraction)
        return str(fraction)

    all_seeds = sorted({seed for sc in scenarios for seed in seeds[sc]})
    rows = [[f"{n} {seed}", *(per_seed(n, sc, seed) for sc in scenarios)] for n in learners for seed in all_seeds]
    print("\nper seed")
    print(table(["learner seed", *scenarios], rows))
    vw = [n for n in VW_LEARNERS if n in learners]
    ours = [n for n in BANDITGATE_LEARNERS if n in learners]

    def ratio(n: str, v: str, scenario: str, seed: int) -> str:
        if seed not in seeds[scenario]:
            return "-"
        a = gain_fraction([by[(n, scenario, seed)]], first, last).value
        b = gain_fraction([by[(v, scenario, seed)]], first, last).value
        value = a / b if b > 0 else math.nan
        report["ratio_to_vw"].setdefault(f"{n}/{v}", {}).setdefault(scenario, {})[str(seed)] = value
        return f"{value:.2f}"

    if vw and ours:
        rows = [
            [f"{n}/{v} {seed}", *(ratio(n, v, sc, seed) for sc in scenarios)]
            for n in ours
            for v in vw
            for seed in all_seeds
        ]
        print("\nratio of fractions of the gain (banditgate learner / VW)")
        print(table(["ratio seed", *scenarios], rows))
    for n in learners:
        mine = [r for r in runs if r.learner == n]
        report["seconds"][n] = {
            "mean": float(np.mean([r.seconds for r in mine])),
            "max": float(np.max([r.seconds for r in mine])),
            "mean_cpu": float(np.mean([r.cpu_seconds for r in mine])),  # 0 in results saved before it was measured
        }
    times = (f"{n} {v['mean']:.0f} ({v['mean_cpu']:.0f} CPU)" for n, v in report["seconds"].items())
    print("\nmean seconds per run, wall (CPU): " + ", ".join(times))
    return report


if __name__ == "__main__":
    raise SystemExit(main())
