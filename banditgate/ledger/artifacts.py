"""What a generation serves with: its oracle (loaded from its artifact, sha256 checked) and its rule.

One place for both, used by serving, retraining, evaluation and health reports alike, so an offline report
judges exactly the policy that serves.
"""

from __future__ import annotations

from pathlib import Path

from banditgate.ledger.models import Generation, Policy
from banditgate.policies.exploration import ExplorationRule, Uniform, make_rule
from banditgate.policies.oracles import RewardOracle, load_oracle, sha256_hex


class ArtifactError(RuntimeError):
    """A generation's artifact is missing or does not match its recorded sha256."""


def load_artifact(generation: Generation, artifact_dir: Path) -> RewardOracle:
    """The generation's fitted oracle, refused unless the file matches the registry's sha256."""
    path = Path(generation.artifact_path or "")
    if not path.is_absolute():
        path = artifact_dir / path
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"cannot read artifact of {generation.policy} gen {generation.number}: {exc}") from exc
    digest = sha256_hex(data)
    if digest != generation.artifact_sha256:
        raise ArtifactError(
            f"artifact {path} of {generation.policy} gen {generation.number} has sha256 {digest}, "
            f"registry says {generation.artifact_sha256}: refusing to serve it"
        )
    return load_oracle(data)


def generation_rule(policy: Policy, generation: Generation) -> ExplorationRule:
    """The exploration rule ``generation`` serves with (see :class:`~banditgate.ledger.models.Policy`).

    Generation 0 has no oracle and is uniform. Otherwise the policy's rule and floor, refined by the
    generation's own parameters (e.g. its SquareCB gamma) when it was trained for the same rule.
    """
    if generation.oracle is None:
        return Uniform()
    params = dict(policy.exploration_params)
    if generation.exploration == policy.exploration:
        params.update({k: v for k, v in generation.exploration_params.items() if k != "floor"})
    return make_rule(policy.exploration, {**params, "floor": policy.floor})
