"""The whole loop on simulated time, in one process: what ``banditgate demo`` runs.

A fresh SQLite ledger, the service on it (:func:`~banditgate.service.app.create_app`, simulated clock on), and a
simulated payment world (:class:`~banditgate.simulator.world.PaymentWorld`) whose traffic goes through the
service's HTTP API (:func:`~banditgate.simulator.driver.run_simulation`): decisions, authorisations seconds
later, chargebacks 45 days and more later. At the end of every simulated day:

1. the candidate trained the day before is judged by the sufficiency gate (:func:`banditgate.monitoring.gate.
   evaluate_gate`, stored like ``banditgate gate`` stores it) on the day of traffic that followed its training
   window, which the deployed generation logged; its true expected authorisation on that day's transactions is
   computed from the world (what it would have earned, had it served them);
2. it is promoted when the gate says SUFFICIENT (:func:`banditgate.ledger.promotion.promote` on the service's
   writer, the serving policy reloaded at once); a refusal is recorded with the gate's reason;
3. a new candidate is retrained on the matured logs (:func:`banditgate.pipelines.retrain.retrain`, default
   options, LightGBM on one thread), with its off-policy report.

Every :data:`CHARGEBACK_EVERY_DAYS` days the deployed generation is also judged on chargeback labels, on every
decision since the start (not stored): chargebacks arrive 45 days and more after the payment, so S stays at
zero for six weeks and rises slowly after, the blind period.

A drift of the world (``concept`` by default: issuers change behaviour, the features do not move) starts half-way
and ramps in over :data:`DRIFT_RAMP_DAYS` days. The run is deterministic for a seed: fixed start date, fixed
decision ids, LightGBM on one thread, seeded gate samples.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from banditgate.ledger.models import Generation, Policy
    from banditgate.ledger.promotion import GateVerdict
    from banditgate.monitoring.gate import GateResult
    from banditgate.pipelines.retrain import RetrainResult
    from banditgate.service.runtime import Runtime
    from banditgate.service.settings import Settings
    from banditgate.simulator.driver import SimulationSummary
    from banditgate.simulator.traffic import TrafficBatch
    from banditgate.simulator.world import PaymentWorld

#: Simulated time of the first day: fixed, so that a seed reproduces the run.
DEMO_START = datetime(2026, 1, 5, tzinfo=UTC)
#: The policy the demo runs.
POLICY = "default"
#: Drift scenario injected half-way, and the days it takes to reach full strength.
DRIFT_SCENARIO = "concept"
DRIFT_RAMP_DAYS = 7.0
#: Days between two judgements of the deployed generation on chargeback labels. Those judge every decision since
#: the start (a week-long window would hold no chargeback ever: none arrives before 45 days), on a sample of
#: :data:`CHARGEBACK_SAMPLE_SIZE` of them.
CHARGEBACK_EVERY_DAYS = 5
CHARGEBACK_SAMPLE_SIZE = 5_000
#: The OPE estimators reported per candidate.
ESTIMATORS = ("dr", "snips", "ips", "dm")
#: The demo policy's gate: a week of evidence (the default month would judge a candidate on traffic from before a
#: drift for weeks after it), and the full candidate sets of 1,000 decisions per window scored (the default 5,000
#: would score every decision of a small ledger's window, several times per evaluation). A candidate is judged
#: on the day after its training window, and its reliability must rest on as many labelled decisions as an
#: average day brings (``min_labelled``, 100 by default): the candidates judged on a quiet day (a weekend)
#: are refused as INSUFFICIENT, and the promotion waits for the next day's candidate.
GATE_WINDOW_DAYS = 7.0
GATE_SCORING_SIZE = 1_000
#: Who promotes, in the audit trail.
ACTOR = "banditgate demo"
#: The file that marks a folder as a demo's: written first, so that even an interrupted demo's folder is one.
DEMO_MARKER = ".banditgate-demo"
#: Files a demo writes in its folder (anything else there means the folder is not a demo's).
DEMO_FILES = (DEMO_MARKER, "ledger.db", "ledger.db-wal", "ledger.db-shm", "artifacts", "report.html", "report.json")


@dataclass(frozen=True)
class Estimate:
    """An off-policy estimate of a candidate's value, with its 95% interval."""

    value: float
    ci_low: float
    ci_high: float


@dataclass
class GenerationRecord:
    """A generation: how it was trained and estimated, what it was truly worth, what it served."""

    number: int
    trained_on_day: int | None
    training_rows: int = 0
    gamma: float | None = None
    floor: float | None = None
    exploration_share: float | None = None
    ess: float | None = None
    estimates: dict[str, Estimate] = field(default_factory=dict)
    #: True expected authorisation on the transactions of the day the gate watched it.
    true_value: float | None = None
    judged_on_day: int | None = None
    status: str = "candidate"
    decisions_served: int = 0
    served_reward: float | None = None
    served_best: float | None = None
    served_uniform: float | None = None


@dataclass(frozen=True)
class GateRecord:
    """One gate evaluation: the generation, the labels it judged on, S, its dimensions and level."""

    day: int
    date: str
    generation: int
    reward_kind: str
    S: float
    level: str
    dimensions: dict[str, float]
    decisions: int
    labelled: int
    #: Labelled decisions made after the generation's training window: what reliability is measured on.
    judged: int
    summary: str


@dataclass(frozen=True)
class PromotionRecord:
    """A promotion the demo asked for: allowed (and deployed) or refused, and why."""

    day: int
    date: str
    generation: int
    deployed_before: int
    allowed: bool
    S: float
    level: str
    message: str


@dataclass(frozen=True)
class DayRecord:
    """A simulated day: its traffic, what served it, and the true value of what was served."""

    day: int
    date: str
    decisions: int
    generations: dict[int, int]
    authorisation_rate: float | None
    expected_reward: float | None
    best_reward: float | None
    uniform_reward: float | None
    concept_drift: float


@dataclass
class StageSeconds:
    """Wall-clock seconds spent in each part of the run (the traffic is everything else)."""

    gate: float = 0.0
    chargeback_gate: float = 0.0
    promotion: float = 0.0
    retrain: float = 0.0
    truth: float = 0.0
    traffic: float = 0.0


@dataclass
class DemoReport:
    """Everything ``report.html`` and ``report.json`` show."""

    days: int
    seed: int
    decisions_per_day: int
    scenario: str
    drift_onset_day: float
    drift_ramp_days: float
    start: str
    #: The gate's level thresholds on S: SUFFICIENT from the first, DEGRADED from the second.
    sufficient: float = 0.8
    degraded: float = 0.5
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)
    decisions: int = 0
    rewards_posted: dict[str, int] = field(default_factory=dict)
    rewards_unposted: dict[str, int] = field(default_factory=dict)
    failed_requests: int = 0
    stage_seconds: StageSeconds = field(default_factory=StageSeconds)
    per_day: list[DayRecord] = field(default_factory=list)
    generations: list[GenerationRecord] = field(default_factory=list)
    gates: list[GateRecord] = field(default_factory=list)
    promotions: list[PromotionRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (dataclasses as objects, every key a string)."""
        data = asdict(self)
        for day in data["per_day"]:
            day["generations"] = {str(k): v for k, v in day["generations"].items()}
        return data


class _JudgedGate:
    """The promotion gate of the demo: the evaluation it just computed for the candidate, SUFFICIENT or not.

    The service's :class:`~banditgate.monitoring.promotion_gate.SufficiencyGate` relies on an evaluation as of
    the wall clock's now; on simulated time the evaluation is as of the simulated day's end, so the demo hands
    over the one it computed for that moment (stored in the ledger, its id in the report).
    """

    name = "sufficiency (simulated time)"

    def __init__(self, result: GateResult) -> None:
        self.result = result

    def check(self, session: Session, policy: Policy, generation: Generation) -> GateVerdict:
        from banditgate.ledger.promotion import GateVerdict

        report = self.result.report
        allowed = report["level"] == "SUFFICIENT"
        message = f"evidence is {report['level']} (S = {report['S']:.3f})" + (
            "" if allowed else f": {report['summary']}"
        )
        return GateVerdict(
            allowed,
            {
                "gate": self.name,
                "allowed": allowed,
                "evaluation_id": report.get("evaluation_id"),
                "level": report["level"],
                "S": report["S"],
                "as_of": report["as_of"],
                "message": message,
            },
        )


ProgressHook = Callable[[int, int], None]
DayHook = Callable[[int, str], None]


@dataclass
class DemoOptions:
    """What a demo runs.

    Parameters
    ----------
    folder
        Where the ledger, the artifacts and the reports go.
    days
        Simulated days.
    seed
        Seed of the traffic and of the world's structure.
    decisions_per_day
        Average transactions a day.
    """

    folder: Path
    days: int = 60
    seed: int = 0
    decisions_per_day: int = 200

    @property
    def drift_onset_day(self) -> float:
        return self.days / 2


def run_demo(
    options: DemoOptions, on_progress: ProgressHook | None = None, on_stage: DayHook | None = None
) -> DemoReport:
    """Run the demo (see the module docstring) and return its report; the reports are not written here."""
    started, cpu = time.perf_counter(), time.process_time()
    report = asyncio.run(_run(options, on_progress, on_stage))
    report.wall_seconds = time.perf_counter() - started
    report.cpu_seconds = time.process_time() - cpu
    stages = report.stage_seconds
    stages.traffic = report.wall_seconds - sum(
        (stages.gate, stages.chargeback_gate, stages.promotion, stages.retrain, stages.truth)
    )
    report.load_average = os.getloadavg()
    return report


def demo_settings(folder: Path, decisions_per_day: int) -> Settings:
    """The service's settings for a demo in ``folder``: its own ledger and artifacts, simulated clock, one process,
    the demo's gate (see :data:`GATE_WINDOW_DAYS`)."""
    from banditgate.service.settings import GateSettings, Settings

    return Settings(
        gate=GateSettings(window_days=GATE_WINDOW_DAYS, parameters={"min_labelled": decisions_per_day}),
        database_url=f"sqlite:///{folder / 'ledger.db'}",
        artifact_dir=folder / "artifacts",
        simulated_clock=True,
        # One process: the promotions switch the serving generation at once (no poll), so a seed replays exactly.
        decision_process=False,
        decision_process_standby=False,
        # A throwaway ledger: commits need not survive a power cut.
        sqlite_synchronous="OFF",
        log_level="WARNING",
        api_key=None,
    )


async def _run(options: DemoOptions, on_progress: ProgressHook | None, on_stage: DayHook | None) -> DemoReport:
    from banditgate.ledger.db import make_engine, make_sessionmaker
    from banditgate.service.app import create_app
    from banditgate.simulator.drift import DriftScenario
    from banditgate.simulator.driver import in_process_client, run_simulation
    from banditgate.simulator.world import PaymentWorld

    settings = demo_settings(options.folder, options.decisions_per_day)
    scenario = DriftScenario.preset(DRIFT_SCENARIO, onset_day=options.drift_onset_day, ramp_days=DRIFT_RAMP_DAYS)
    world = PaymentWorld(scenario, seed=options.seed, epoch=DEMO_START)
    prefix = f"demo{options.seed}-"
    report = DemoReport(
        days=options.days,
        seed=options.seed,
        decisions_per_day=options.decisions_per_day,
        scenario=DRIFT_SCENARIO,
        drift_onset_day=options.drift_onset_day,
        drift_ramp_days=DRIFT_RAMP_DAYS,
        start=DEMO_START.isoformat(),
    )
    # The same batches the driver sends, regenerated from the seed: the truth of the candidates is computed on them.
    batches = world.traffic_batches(DEMO_START, options.days, options.decisions_per_day, options.seed, prefix)
    engine = make_engine(settings.database_url, sqlite_synchronous="OFF")
    loop = _DailyLoop(settings, make_sessionmaker(engine), world, report, on_stage)
    app = create_app(settings)
    try:
        async with in_process_client(app) as client:
            loop.runtime = app.state.runtime

            async def day_end(day: int, day_end: datetime) -> None:
                await loop.end_of_day(day, day_end, next(batches))

            summary = await run_simulation(
                client,
                world,
                days=options.days,
                decisions_per_day=options.decisions_per_day,
                seed=options.seed,
                id_prefix=prefix,
                start=DEMO_START,
                on_day_end=day_end,
                on_progress=on_progress,
            )
    finally:
        engine.dispose()
    loop.finish(summary)
    return report


class _DailyLoop:
    """The end-of-day work: judge yesterday's candidate, promote it if allowed, retrain, record everything."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        world: PaymentWorld,
        report: DemoReport,
        on_stage: DayHook | None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.world = world
        self.report = report
        self.on_stage = on_stage
        gate = settings.gate_for(POLICY)
        self.gate_options = gate.options(scoring_size=GATE_SCORING_SIZE)
        report.sufficient = self.gate_options.parameters.sufficient
        report.degraded = self.gate_options.parameters.degraded
        self.chargeback_options = gate.options(
            scoring_size=GATE_SCORING_SIZE,
            reward_kind="chargeback",
            window_days=float(report.days),
            sample_size=CHARGEBACK_SAMPLE_SIZE,
        )
        self.runtime: Runtime | None = None
        self.pending: int | None = None  # the candidate trained yesterday, judged today
        self.deployed = 0
        self.generations: dict[int, GenerationRecord] = {0: GenerationRecord(0, None, status="deployed")}

    def _stage(self, day: int, text: str) -> None:
        if self.on_stage is not None:
            self.on_stage(day, text)

    async def end_of_day(self, day: int, day_end: datetime, batch: TrafficBatch) -> None:
        # The work is synchronous (LightGBM, pandas); the service is idle meanwhile (the day is settled).
        stages = self.report.stage_seconds
        if self.pending is not None:
            self._stage(day, f"gate: generation {self.pending}")
            await self._judge_and_promote(day, day_end, batch, self.pending)
        if day % CHARGEBACK_EVERY_DAYS == CHARGEBACK_EVERY_DAYS - 1:
            self._stage(day, "gate on chargebacks")
            started = time.perf_counter()
            self._judge_chargebacks(day, day_end)
            stages.chargeback_gate += time.perf_counter() - started
        if day + 1 < self.report.days:
            self._stage(day, "retrain")
            started = time.perf_counter()
            self.pending = self._retrain(day, day_end)
            stages.retrain += time.perf_counter() - started

    async def _judge_and_promote(self, day: int, day_end: datetime, batch: TrafficBatch, number: int) -> None:
        from banditgate.ledger.promotion import GateRefused, promote
        from banditgate.service.gate_worker import compute_gate

        started = time.perf_counter()
        result = compute_gate(
            self.sessions,
            self.settings.artifact_dir,
            POLICY,
            number,
            options=self.gate_options,
            as_of=day_end,
            drift_report=False,  # no HTML gate report: evidently's plotly figures would cost more than the tests
        )
        stages = self.report.stage_seconds
        stages.gate += time.perf_counter() - started
        self.report.gates.append(_gate_record(day, day_end, number, result))
        record = self.generations[number]
        started = time.perf_counter()
        record.true_value, record.judged_on_day = self._true_value(number, batch), day
        stages.truth += time.perf_counter() - started
        started = time.perf_counter()
        gate = _JudgedGate(result)
        before = self.deployed
        assert self.runtime is not None
        try:
            await self.runtime.writer.call(
                lambda s: promote(
                    s, POLICY, number, actor=ACTOR, reason=f"scheduled promotion, day {day + 1}", gate=gate
                )
            )
        except GateRefused as exc:
            allowed, message = False, str(exc.report.get("message", exc))
            record.status = "refused"
        else:
            allowed, message = True, f"promoted: evidence {result.report['level']} (S = {result.report['S']:.3f})"
            await self.runtime.refresh_policies()  # serve it from the next transaction on, not from the next poll
            self.generations[before].status = "retired"
            record.status = "deployed"
            self.deployed = number
        stages.promotion += time.perf_counter() - started
        self.report.promotions.append(
            PromotionRecord(
                day=day,
                date=day_end.date().isoformat(),
                generation=number,
                deployed_before=before,
                allowed=allowed,
                S=float(result.report["S"]),
                level=result.report["level"],
                message=message,
            )
        )

    def _judge_chargebacks(self, day: int, day_end: datetime) -> None:
        from banditgate.service.gate_worker import compute_gate

        result = compute_gate(
            self.sessions,
            self.settings.artifact_dir,
            POLICY,
            self.deployed,
            options=self.chargeback_options,
            as_of=day_end,
            store=False,
            drift_report=False,
        )
        self.report.gates.append(_gate_record(day, day_end, self.deployed, result))

    def _retrain(self, day: int, day_end: datetime) -> int | None:
        from banditgate.pipelines.retrain import NotEnoughData, RetrainOptions, retrain

        options = RetrainOptions(as_of=day_end, oracle_overrides={"num_threads": 1})
        try:
            result = retrain(self.sessions, self.settings.artifact_dir, POLICY, options)
        except NotEnoughData:
            return None
        generation = result.generation
        self.generations[generation.number] = _generation_record(day, result)
        return int(generation.number)

    def _true_value(self, number: int, batch: TrafficBatch) -> float:
        """The true expected authorisation of generation ``number`` on ``batch``, as it would serve it."""
        from banditgate.ledger import registry
        from banditgate.ledger.artifacts import generation_rule, load_artifact
        from banditgate.policies.actions import Action
        from banditgate.policies.oracles.features import decision_row

        with self.sessions() as session:
            policy = registry.get_policy(session, POLICY)
            generation = registry.get_generation(session, POLICY, number)
            assert generation is not None
            oracle = load_artifact(generation, self.settings.artifact_dir)
            rule = generation_rule(policy, generation)
        rows, offsets, positions = [], [0], []
        for tx in batch.transactions():
            body = tx.decision_request()
            for action in body["actions"]:
                rows.append(decision_row(body["context"], Action(action["id"], action["features"])))
                positions.append(batch.catalogue.position(action["id"]))
            offsets.append(len(rows))
        import pandas as pd

        scores = oracle.predict_frame(pd.DataFrame.from_records(rows)).tolist()
        matrix = np.zeros(batch.eligible.shape)
        for i in range(len(batch)):
            a, b = offsets[i], offsets[i + 1]
            matrix[i, positions[a:b]] = rule.probability_list(scores[a:b])
        return float(batch.expected_reward(matrix).mean())

    def finish(self, summary: SimulationSummary) -> None:
        """Fold the driver's summary (per day, per generation) into the report."""
        report = self.report
        report.decisions = summary.decisions
        report.rewards_posted = summary.rewards_posted
        report.rewards_unposted = dict(summary.unposted)
        report.failed_requests = summary.failed_requests
        for day, tally in sorted(summary.per_day.items()):
            values = tally.to_dict()
            effects = self.world.scenario.effects(float(day) + 0.5)
            report.per_day.append(
                DayRecord(
                    day=day,
                    date=(DEMO_START + timedelta(days=day)).date().isoformat(),
                    decisions=values["decisions"],
                    generations=dict(values["generations"]),
                    authorisation_rate=values["authorisation_rate"],
                    expected_reward=values["expected_reward"],
                    best_reward=values["best_reward"],
                    uniform_reward=values["uniform_reward"],
                    concept_drift=float(effects.concept),
                )
            )
        for number, tally in summary.per_generation.items():
            values = tally.to_dict()
            record = self.generations.setdefault(number, GenerationRecord(number, None))
            record.decisions_served = values["decisions"]
            record.served_reward = values["expected_reward"]
            record.served_best = values["best_reward"]
            record.served_uniform = values["uniform_reward"]
        report.generations = [self.generations[n] for n in sorted(self.generations)]


def _gate_record(day: int, day_end: datetime, number: int, result: GateResult) -> GateRecord:
    report = result.report
    size = report.get("evidence_size") or {}
    return GateRecord(
        day=day,
        date=day_end.date().isoformat(),
        generation=number,
        reward_kind=report["options"]["reward_kind"],
        S=float(report["S"]),
        level=report["level"],
        dimensions={name: float(d["value"]) for name, d in report["dimensions"].items()},
        decisions=int(size.get("decisions", report["windows"]["current"]["decisions"])),
        labelled=int(size.get("labelled", 0)),
        judged=int(size.get("judged", 0)),
        summary=str(report.get("summary", "")),
    )


def _generation_record(day: int, result: RetrainResult) -> GenerationRecord:
    generation, ope = result.generation, result.ope_report
    candidate = ope["policies"]["candidate"]["estimates"]
    choice = ope.get("exploration", {})
    gamma = generation.exploration_params.get("gamma")
    shares = [c["off_greedy_mass"] for c in choice.get("candidates", []) if c.get("gamma") == gamma]
    return GenerationRecord(
        number=int(generation.number),
        trained_on_day=day,
        training_rows=result.training_rows,
        gamma=None if gamma is None else float(gamma),
        floor=generation.exploration_params.get("floor"),
        exploration_share=float(shares[0]) if shares else None,
        ess=float(candidate["dr"]["ess"]),
        estimates={
            name: Estimate(
                float(candidate[name]["value"]), float(candidate[name]["ci_low"]), float(candidate[name]["ci_high"])
            )
            for name in ESTIMATORS
            if name in candidate
        },
    )
