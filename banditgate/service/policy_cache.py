"""What each serving process keeps in memory per policy: the deployed generation, its oracle, its rule.

The cache is rebuilt from the registry whenever a policy's revision changes (promotion, rollback,
configuration), polled every few seconds. A rebuild swaps one dict reference, so a request in flight
keeps the policy it started with and never sees a half-loaded one.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger.artifacts import ArtifactError, generation_rule, load_artifact
from banditgate.ledger.models import Generation, Policy
from banditgate.ledger.registry import get_generation, list_policies, policy_revisions
from banditgate.policies.exploration import ExplorationRule
from banditgate.policies.oracles import RewardOracle

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServingPolicy:
    name: str
    generation: int
    rule: ExplorationRule
    oracle: RewardOracle | None
    model_sha256: str | None
    revision: int


def serving_policy(policy: Policy, generation: Generation, artifact_dir: Path) -> ServingPolicy:
    """Build the in-memory policy for the deployed generation (see :class:`~banditgate.ledger.models.Policy`)."""
    rule = generation_rule(policy, generation)
    if generation.oracle is None:
        return ServingPolicy(policy.name, generation.number, rule, None, None, policy.revision)
    oracle = load_artifact(generation, artifact_dir)
    return ServingPolicy(policy.name, generation.number, rule, oracle, generation.artifact_sha256, policy.revision)


class PolicyCache:
    """The deployed generation of every policy, reloaded when a policy's revision changes.

    Parameters
    ----------
    sessions
        Sessions on the ledger.
    artifact_dir
        Where model artifacts are stored.
    models
        Load each deployed generation's model. ``False`` in a serving process whose decisions a decision
        process makes: it needs the policies' names and generations only, and loading a model imports its
        library (LightGBM, scikit-learn and pandas: seconds), on the start-up path of every worker.
    """

    def __init__(self, sessions: sessionmaker[Session], artifact_dir: Path, models: bool = True) -> None:
        self._sessions = sessions
        self._artifact_dir = artifact_dir
        self._models = models
        self._policies: dict[str, ServingPolicy] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> ServingPolicy | None:
        if not self._models:
            raise RuntimeError("this policy cache holds no models: decisions are made by the decision process")
        return self._policies.get(name)

    def names(self) -> list[str]:
        return sorted(self._policies)

    def refresh(self) -> list[str]:
        """Reload the policies whose revision changed; return their names.

        A policy whose new generation cannot be loaded keeps serving what it served before, loudly.
        """
        with self._lock, self._sessions() as session:
            revisions = policy_revisions(session)
            stale = [n for n, r in revisions.items() if n not in self._policies or self._policies[n].revision != r]
            if not stale and set(revisions) == set(self._policies):
                return []
            policies = {p.name: p for p in list_policies(session) if p.name in stale}
            updated = {n: p for n, p in self._policies.items() if n in revisions}
            reloaded = []
            for name, policy in policies.items():
                generation = get_generation(session, name, policy.deployed_generation)
                try:
                    if generation is None:
                        raise ArtifactError(f"policy {name} deploys generation {policy.deployed_generation}, not found")
                    if self._models:
                        updated[name] = serving_policy(policy, generation, self._artifact_dir)
                    else:
                        rule = generation_rule(policy, generation)
                        updated[name] = ServingPolicy(
                            name, generation.number, rule, None, generation.artifact_sha256, policy.revision
                        )
                except Exception:
                    log.exception(
                        "cannot load policy %s (revision %d); keeping the previous one", name, policy.revision
                    )
                    continue
                reloaded.append(name)
                log.info("serving policy %s generation %d (revision %d)", name, generation.number, policy.revision)
            self._policies = updated
            return reloaded
