"""``banditgate evaluate``: a candidate generation against the deployed one and uniform random, off-policy.

The evaluation rows are the matured decisions logged *after* the candidate's training window ended, so the
model is never judged on rows it was trained on (a time split). Writes the report as JSON and as HTML with
plots (estimates with their intervals per policy, and the importance-weight distribution).
"""

from __future__ import annotations

import base64
import io
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader
from matplotlib.figure import Figure
from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger import registry
from banditgate.ledger.types import utcnow
from banditgate.pipelines.evaluation import EvaluatedPolicy, evaluate_policies, evaluated_generation
from banditgate.pipelines.training_set import load_training_set
from banditgate.policies.exploration import Greedy, Uniform


class NothingToEvaluate(RuntimeError):
    """No matured decision after the candidate's training window yet."""


def evaluate(
    sessions: sessionmaker[Session],
    artifact_dir: Path,
    policy: str,
    number: int,
    as_of: datetime | None = None,
    window: timedelta = timedelta(days=14),
    max_rows: int = 50_000,
) -> dict[str, Any]:
    """Off-policy report of generation ``number`` against the deployed generation and uniform random."""
    as_of = as_of or utcnow()
    with sessions() as session:
        config = registry.get_policy(session, policy)
        candidate = registry.get_generation(session, policy, number)
        if candidate is None:
            raise LookupError(f"policy {policy!r} has no generation {number}")
        deployed = registry.get_generation(session, policy, config.deployed_generation)
        assert deployed is not None
        trained_until = candidate.training_window_end or candidate.created_at
        start = max(trained_until, as_of - window)
        logs = load_training_set(session, policy, as_of, as_of - start, actions_for_last=max_rows)
    if len(logs) < 2:
        raise NothingToEvaluate(
            f"{policy} generation {number}: {len(logs)} matured decisions after its training window "
            f"(ended {trained_until.isoformat()}); wait for more traffic"
        )
    rows = np.arange(len(logs))[-max_rows:]
    candidate_policy = evaluated_generation("candidate", config, candidate, artifact_dir)
    deployed_policy = evaluated_generation("deployed", config, deployed, artifact_dir)
    policies = [
        candidate_policy,
        EvaluatedPolicy("candidate_greedy", candidate_policy.oracle, Greedy()),
        deployed_policy,
        EvaluatedPolicy("uniform", None, Uniform()),
    ]
    reward_model = candidate_policy.oracle or deployed_policy.oracle
    if reward_model is None:
        raise NothingToEvaluate(f"{policy}: neither generation {number} nor the deployed one has a reward model")
    report = evaluate_policies(logs, rows, policies, reward_model)
    report.update(
        {
            "policy": policy,
            "generation": number,
            "deployed_generation": deployed.number,
            "evaluated_from": start.isoformat(),
            "as_of": as_of.isoformat(),
            "weights": _weight_summary(logs.propensities[rows]),
            "feature_importance": (
                candidate_policy.oracle.feature_importance().to_dict() if candidate_policy.oracle is not None else None
            ),
            # How retraining chose the generation's floor and gamma (absent for generations trained before it did).
            "exploration": (candidate.ope_report or {}).get("exploration"),
        }
    )
    return report


def _weight_summary(propensities: np.ndarray) -> dict[str, Any]:
    counts, edges = np.histogram(np.log10(1.0 / propensities), bins=20)
    return {"log10_inverse_propensity_histogram": {"counts": counts.tolist(), "edges": edges.tolist()}}


def render_html(report: dict[str, Any]) -> str:
    """The report as a standalone HTML page (plots embedded as PNG: no network needed to view it)."""
    # autoescape=True: select_autoescape() decides by file extension and would leave *.j2 unescaped.
    environment = Environment(loader=PackageLoader("banditgate.pipelines"), autoescape=True)
    return environment.get_template("evaluation.html.j2").render(
        report=report, estimates_plot=_estimates_plot(report), weights_plot=_weights_plot(report)
    )


def _png(figure: Figure) -> str:
    # Figure objects, not pyplot: no global state and no display backend, safe in a server or a job.
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _estimates_plot(report: dict[str, Any]) -> str:
    policies = list(report["policies"])
    estimators = list(next(iter(report["policies"].values()))["estimates"])
    figure = Figure(figsize=(9, 4))
    axis = figure.subplots()
    width = 0.8 / len(policies)
    for k, name in enumerate(policies):
        estimates = report["policies"][name]["estimates"]
        values = np.array([estimates[e]["value"] for e in estimators])
        errors = np.array(
            [
                [estimates[e]["value"] - estimates[e]["ci_low"], estimates[e]["ci_high"] - estimates[e]["value"]]
                for e in estimators
            ]
        ).T
        axis.errorbar(
            np.arange(len(estimators)) + (k - (len(policies) - 1) / 2) * width,
            values,
            yerr=errors,
            fmt="o",
            capsize=3,
            label=name,
        )
    axis.axhline(report["logged_reward"], color="grey", linestyle=":", label="logged")
    axis.set_xticks(np.arange(len(estimators)), estimators)
    axis.set_ylabel("estimated reward (95% CI)")
    axis.legend(fontsize=8)
    return _png(figure)


def _weights_plot(report: dict[str, Any]) -> str:
    histogram = report["weights"]["log10_inverse_propensity_histogram"]
    figure = Figure(figsize=(6, 3))
    axis = figure.subplots()
    edges = np.array(histogram["edges"])
    axis.bar(edges[:-1], histogram["counts"], width=np.diff(edges), align="edge")
    axis.set_xlabel("log10(1 / logged propensity)")
    axis.set_ylabel("decisions")
    return _png(figure)
