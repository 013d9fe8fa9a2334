"""What the operator dashboard (``/ui``) shows, read from the ledger: typed views the templates render.

Only stored results are read (generations and their OPE reports, stored gate evaluations, the audit trail, a
bounded sample of recent decisions): a page load computes nothing expensive. Everything here comes from the
ledger, where a report may be partial or written by an older version, so each value is read defensively.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from banditgate.ledger import registry
from banditgate.ledger.activity import RecentActivity
from banditgate.ledger.gate_evaluations import GateEvaluationSummary, gate_history, latest_gate_levels
from banditgate.ledger.models import AuditEvent, Generation, Policy

#: The sufficiency model's dimensions, in the order the gate reports them.
DIMENSIONS = ("completeness", "freshness", "reliability", "representativeness")
#: The thresholds of S each evaluation was judged with (its options' parameters), drawn with S.
THRESHOLDS = ("sufficient", "degraded")
#: Stored evaluations of one generation plotted over time.
GATE_HISTORY = 30
#: Audit events listed.
AUDIT_EVENTS = 20


@dataclass(frozen=True)
class Estimate:
    value: float | None
    ci_low: float | None
    ci_high: float | None
    ess: float | None


@dataclass(frozen=True)
class OpeSummary:
    """A generation's off-policy evaluation at retraining: each compared policy's estimates, by estimator."""

    n: int | None
    logged_reward: float | None
    estimators: list[str]
    policies: dict[str, dict[str, Estimate]]


@dataclass(frozen=True)
class GenerationView:
    """One generation in the lineage.

    ``state`` is its status, except that a candidate is shown as ``rejected`` when a later generation has been
    deployed since (it was passed over) or its latest stored gate evaluation is INSUFFICIENT.
    """

    generation: Generation
    state: str
    gate: GateEvaluationSummary | None
    ope: OpeSummary | None


@dataclass(frozen=True)
class Proxy:
    name: str
    category: str
    status: str
    normalised: float | None
    trigger: float | None
    covers: list[str]


@dataclass(frozen=True)
class GateView:
    """The stored gate evaluations of one generation: the latest in full, and S and its dimensions over time."""

    generation: int
    evaluation_id: int | None = None
    as_of: str | None = None
    computed_at: str | None = None
    level: str | None = None
    score: float | None = None
    score_proxy: float | None = None
    level_proxy: str | None = None
    gate_factor: float | None = None
    summary: str = ""
    dimensions: dict[str, float | None] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    alerts: list[str] = field(default_factory=list)
    proxies: list[Proxy] = field(default_factory=list)
    days_until_sufficient: float | None = None
    sufficient_on: datetime | None = None
    explanation: str = ""
    #: ``{"t": [unix seconds], "S": [...], "S_proxy": [...], dimension: [...], threshold: [...]}`` over the
    #: stored evaluations.
    series: dict[str, list[float | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class LineageNode:
    number: int
    state: str
    x: float
    title: str


@dataclass(frozen=True)
class LineageEdge:
    """An arc from a parent generation to a generation trained while it was deployed (SVG path data)."""

    path: str


@dataclass(frozen=True)
class Lineage:
    """The generations as a picture: one node each, oldest on the left, an arc from each to its parent."""

    nodes: list[LineageNode]
    edges: list[LineageEdge]
    width: float
    height: float
    y: float
    radius: float = 14.0


@dataclass(frozen=True)
class PolicyPage:
    policy: Policy
    generations: list[GenerationView]
    lineage: Lineage
    audit: list[AuditEvent]
    gate: GateView | None
    candidates: list[int]
    retired: list[int]


def policy_page(session: Session, name: str, gate_generation: int | None = None) -> PolicyPage:
    """Everything the policy page shows. ``gate_generation`` picks whose gate evaluations are shown (default:
    the newest candidate, else the deployed generation). Raises :class:`registry.UnknownPolicy`."""
    policy = registry.get_policy(session, name)
    generations = registry.list_generations(session, name)
    levels = latest_gate_levels(session, name)
    deployed_since = max((g.promoted_at for g in generations if g.promoted_at is not None), default=None)
    views = [
        GenerationView(g, _state(g, levels.get(g.number), deployed_since), levels.get(g.number), _ope(g.ope_report))
        for g in reversed(generations)
    ]
    candidates = [g.number for g in generations if g.status == "candidate"]
    if gate_generation is None or all(g.number != gate_generation for g in generations):
        gate_generation = candidates[-1] if candidates else policy.deployed_generation
    return PolicyPage(
        policy=policy,
        generations=views,
        lineage=lineage(views),
        audit=registry.list_audit_events(session, name, limit=AUDIT_EVENTS),
        gate=gate_view(session, name, gate_generation),
        candidates=candidates,
        retired=[g.number for g in generations if g.status == "retired"],
    )


def gate_view(session: Session, policy: str, generation: int) -> GateView:
    """The latest stored evaluation of ``generation`` and the history of S and its dimensions."""
    history = gate_history(session, policy, generation, limit=GATE_HISTORY)
    if not history:
        return GateView(generation=generation)
    series: dict[str, list[float | None]] = {
        "t": [],
        "S": [],
        "S_proxy": [],
        **{d: [] for d in DIMENSIONS},
        **{level: [] for level in THRESHOLDS},
    }
    for row in history:
        dims = _mapping(row.report.get("dimensions"))
        parameters = _mapping(_mapping(row.report.get("options")).get("parameters"))
        series["t"].append(row.as_of.timestamp())
        series["S"].append(_number(row.score))
        series["S_proxy"].append(_number(row.score_proxy))
        for level in THRESHOLDS:
            series[level].append(_number(parameters.get(level)))
        for d in DIMENSIONS:
            series[d].append(_number(_mapping(dims.get(d)).get("value")))
    latest = history[-1]
    report = latest.report
    latency = _mapping(report.get("label_latency"))
    days = _number(latency.get("days_until_sufficient"))
    proxies = [
        Proxy(
            name=str(p.get("name", "")),
            category=str(p.get("category", "")),
            status=str(p.get("status", "")),
            normalised=_number(p.get("normalised")),
            trigger=_number(p.get("trigger")),
            covers=[str(c) for c in p.get("covers", []) if isinstance(c, str)],
        )
        for p in _list(report.get("proxies"))
        if isinstance(p, dict)
    ]
    return GateView(
        generation=generation,
        evaluation_id=latest.id,
        as_of=latest.as_of.isoformat(),
        computed_at=latest.computed_at.isoformat(),
        level=latest.level,
        score=_number(latest.score),
        score_proxy=_number(latest.score_proxy),
        level_proxy=_text(report.get("level_proxy")),
        gate_factor=_number(report.get("A")),
        summary=str(report.get("summary", "")),
        dimensions={d: series[d][-1] for d in DIMENSIONS},
        evidence={
            k: v for k, v in _mapping(report.get("evidence_size")).items() if k in ("decisions", "labelled", "judged")
        },
        alerts=[str(a.get("message", a.get("kind", ""))) for a in _list(report.get("alerts")) if isinstance(a, dict)],
        proxies=proxies,
        days_until_sufficient=days,
        sufficient_on=None if days is None or days > 36_500 else latest.as_of + timedelta(days=days),
        explanation=str(latency.get("explanation", "")),
        series=series,
    )


def lineage(views: list[GenerationView], step: float = 56.0, radius: float = 14.0) -> Lineage:
    """Place the generations of ``views`` left to right by number, with an arc to each from its parent.

    The higher an arc, the further back its parent: a generation trained from an old deployment stands out.

    >>> from banditgate.ledger.models import Generation
    >>> views = [GenerationView(Generation(number=n, parent=p, status="retired"), "retired", None, None)
    ...          for n, p in [(0, None), (1, 0), (2, 0)]]
    >>> picture = lineage(views)
    >>> [node.x for node in picture.nodes], [edge.path for edge in picture.edges]
    ([30.0, 86.0, 142.0], ['M 30.0 56.0 Q 58.0 30.0 86.0 56.0', 'M 30.0 56.0 Q 86.0 16.0 142.0 56.0'])
    """
    ordered = sorted(views, key=lambda v: v.generation.number)
    x = {v.generation.number: 30.0 + i * step for i, v in enumerate(ordered)}
    y = 70.0 - radius
    nodes = []
    edges = []
    for v in ordered:
        g = v.generation
        who = f"; promoted by {g.promoted_by}: {g.promoted_reason}" if g.promoted_at is not None else ""
        nodes.append(LineageNode(g.number, v.state, x[g.number], f"generation {g.number}: {v.state}{who}"))
        if g.parent is not None and g.parent in x:
            start, end = x[g.parent], x[g.number]
            lift = min(12.0 + 14.0 * abs(end - start) / step, 52.0)
            edges.append(LineageEdge(f"M {start} {y} Q {(start + end) / 2} {y - lift} {end} {y}"))
    return Lineage(nodes, edges, width=60.0 + step * max(len(ordered) - 1, 0), height=y + 2 * radius + 4, y=y + radius)


def activity_json(activity: RecentActivity) -> dict[str, Any]:
    """The recent activity as the page's script reads it (``GET /ui/policies/{name}/activity``)."""
    return {
        "policy": activity.policy,
        "decisions": activity.decisions,
        "first": None if activity.first is None else activity.first.isoformat(),
        "last": None if activity.last is None else activity.last.isoformat(),
        "decisions_per_minute": activity.decisions_per_minute,
        "rewards_per_minute": activity.rewards_per_minute,
        "exploration_share": activity.exploration_share,
        "explored": activity.explored,
        "actions": activity.actions,
        "generations": {str(k): v for k, v in activity.generations.items()},
        "rewards": [{"kind": r.kind, "count": r.count, "mean": r.mean} for r in activity.rewards],
        "bucket_seconds": activity.bucket_seconds,
        "timeline": {
            "t": [b.start.timestamp() for b in activity.timeline],
            "decisions": [b.decisions for b in activity.timeline],
            "rewards": [b.rewards for b in activity.timeline],
        },
    }


def _state(generation: Generation, gate: GateEvaluationSummary | None, deployed_since: datetime | None) -> str:
    if generation.status != "candidate":
        return generation.status
    passed_over = deployed_since is not None and deployed_since > generation.created_at
    if passed_over or (gate is not None and gate.level == "INSUFFICIENT"):
        return "rejected"
    return "candidate"


def _ope(report: Any) -> OpeSummary | None:
    report = _mapping(report)
    policies = _mapping(report.get("policies"))
    if not policies:
        return None
    estimates: dict[str, dict[str, Estimate]] = {}
    estimators: list[str] = []
    for name, entry in policies.items():
        rows = {}
        for estimator, e in _mapping(_mapping(entry).get("estimates")).items():
            e = _mapping(e)
            rows[str(estimator)] = Estimate(
                _number(e.get("value")), _number(e.get("ci_low")), _number(e.get("ci_high")), _number(e.get("ess"))
            )
            if estimator not in estimators:
                estimators.append(str(estimator))
        estimates[str(name)] = rows
    n = report.get("n")
    return OpeSummary(
        n=n if isinstance(n, int) else None,
        logged_reward=_number(report.get("logged_reward")),
        estimators=estimators,
        policies=estimates,
    )


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _number(value: Any) -> float | None:
    """A finite float, or None (a missing, non-numeric, NaN or infinite value is not plotted)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
