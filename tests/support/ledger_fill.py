"""Fill a ledger with simulated payment traffic, decided by the real Decider, without HTTP.

For pipeline tests and benchmarks, where what matters is what is in the log, not how it got there (the
HTTP path has its own tests). Rewards are written with the simulated time they would have arrived at.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger import registry
from banditgate.ledger.db import make_engine, make_sessionmaker
from banditgate.ledger.migrate import upgrade
from banditgate.ledger.models import Decision, Reward
from banditgate.service.decider import Decider
from banditgate.service.policy_cache import PolicyCache
from banditgate.simulator import PaymentWorld


def fill(
    sessions: sessionmaker[Session],
    artifact_dir: Path,
    world: PaymentWorld,
    *,
    start: datetime,
    days: int,
    per_day: int,
    seed: int,
    policy: str = "default",
    prefix: str = "",
) -> dict[str, float]:
    """Decide ``days * per_day`` simulated transactions with the policy's deployed generation and log them.

    Returns the count and, from the world's truth, the expected authorisation rate of the logged decisions,
    of uniform random over the same transactions and of always choosing the best action.
    """
    cache = PolicyCache(sessions, artifact_dir)
    cache.refresh()
    serving = cache.get(policy)
    # The decisions depend only on the traffic and on what the policy serves (a decision's draw is a hash of its
    # id, policy and generation): a repeat of the same fill on another ledger reuses the rows decided before.
    key = None
    if serving is not None:
        rule = serving.rule
        key = (world, start, days, per_day, seed, policy, prefix, serving.generation, serving.model_sha256)
        key += (rule.name, repr(sorted(rule.params().items())))
    decided = _DECIDED.get(key) if key is not None else None
    if decided is None:
        decided = _decide(
            cache, world, start=start, days=days, per_day=per_day, seed=seed, policy=policy, prefix=prefix
        )
        if key is not None:
            _DECIDED[key] = decided
            while len(_DECIDED) > _DECIDED_KEPT:
                _DECIDED.pop(next(iter(_DECIDED)))
    decisions, rewards, totals = decided
    with sessions() as session, session.begin():
        for i in range(0, len(decisions), 5000):
            session.execute(insert(Decision), decisions[i : i + 5000])
        for i in range(0, len(rewards), 5000):
            session.execute(insert(Reward), rewards[i : i + 5000])
    return dict(totals)


#: Rows of recent fills (see :func:`fill`), oldest first, a few only: each holds thousands of decisions.
_DECIDED: dict[tuple, tuple[list[dict], list[dict], dict[str, float]]] = {}
_DECIDED_KEPT = 6


def _decide(
    cache: PolicyCache,
    world: PaymentWorld,
    *,
    start: datetime,
    days: int,
    per_day: int,
    seed: int,
    policy: str,
    prefix: str,
) -> tuple[list[dict], list[dict], dict[str, float]]:
    """The decision and reward rows of :func:`fill`, and its totals."""
    decider = Decider(cache, policy)
    decisions, rewards, expected, uniform, best = [], [], 0.0, 0.0, 0.0
    for t, tx in world.traffic(start=start, days=days, decisions_per_day=per_day, seed=seed, id_prefix=prefix):
        body = tx.decision_request()
        record, _ = decider.decide(body["context"], body["actions"], body["decision_id"], policy, now=t)
        decisions.append(record.as_row())
        probabilities = dict(zip([a["id"] for a in record.actions], record.probabilities, strict=True))
        expected += tx.expected_reward(probabilities)
        uniform += tx.expected_reward({a: 1 / len(probabilities) for a in probabilities})
        best += tx.authorisation_probability(tx.best_action())
        for event in tx.outcome(record.action_id).events:
            rewards.append(
                {
                    "decision_id": record.decision_id,
                    "kind": event.kind,
                    "value": event.value,
                    "revision": 1,
                    "observed_at": event.observed_at,
                    "received_at": event.observed_at,
                }
            )
    n = max(len(decisions), 1)
    totals = {
        "decisions": len(decisions),
        "expected_reward": expected / n,
        "uniform_reward": uniform / n,
        "best_reward": best / n,
    }
    return decisions, rewards, totals


def fill_two_segments(
    sessions: sessionmaker[Session],
    artifact_dir: Path,
    *,
    start: datetime,
    decisions: int,
    low_share: float,
    advantage: float,
    seed: int,
    prefix: str,
    policy: str = "default",
) -> dict[str, float]:
    """Decide ``decisions`` synthetic payments over one day with the deployed generation, and log rewards.

    Two segments (context ``segment`` 0 or 1, plus a noise feature ``amount``): segment 1, a ``low_share`` of
    the traffic (e.g. weekend payments), authorises 0.55 of the time under action ``b``, segment 0 0.85;
    action ``a`` adds ``advantage`` everywhere. The traffic mix alone thus moves the realised reward by
    ``0.3 * change of low_share``, whatever the policy does. Returns the mean realised reward.
    """
    rng = np.random.default_rng(seed)
    cache = PolicyCache(sessions, artifact_dir)
    cache.refresh()
    decider = Decider(cache, policy)
    actions = [{"id": "a", "features": {}}, {"id": "b", "features": {}}]
    rows, labels, rewards = [], [], []
    for i in range(decisions):
        t = start + timedelta(days=i / decisions)
        segment = int(rng.random() < low_share)
        context = {"segment": segment, "amount": float(rng.uniform(5.0, 500.0))}
        record, _ = decider.decide(context, actions, f"{prefix}{i:06d}", policy, now=t)
        rows.append(record.as_row())
        p = (0.55 if segment else 0.85) + (advantage if record.action_id == "a" else 0.0)
        value = float(rng.random() < p)
        rewards.append(value)
        labels.append(
            {
                "decision_id": record.decision_id,
                "kind": "authorisation",
                "value": value,
                "revision": 1,
                "observed_at": t,
                "received_at": t + timedelta(seconds=1),
            }
        )
    with sessions() as session, session.begin():
        session.execute(insert(Decision), rows)
        session.execute(insert(Reward), labels)
    return {"decisions": decisions, "realised_reward": float(np.mean(rewards))}


def simulated_ledger(
    directory: Path,
    world: PaymentWorld,
    *,
    days: int,
    per_day: int,
    seed: int,
    then: Callable[[sessionmaker[Session]], object] | None = None,
) -> dict[str, str]:
    """A SQLite ledger in ``directory`` with policy ``default`` and simulated traffic from the world's epoch.

    ``then`` runs on the filled ledger (e.g. a retraining). Returns the environment a command needs to use it.
    """
    url = f"sqlite:///{directory / 'ledger.db'}"
    engine = make_engine(url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    with sessions() as session, session.begin():
        registry.put_policy(session, "default", registry.PolicySpec(), actor="test")
    fill(sessions, directory / "artifacts", world, start=world.epoch, days=days, per_day=per_day, seed=seed)
    if then is not None:
        then(sessions)
    engine.dispose()
    return {"BANDITGATE_DATABASE_URL": url, "BANDITGATE_ARTIFACT_DIR": str(directory / "artifacts")}
