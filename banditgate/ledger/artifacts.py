"""What a generation serves with: its oracle (loaded from its artifact, sha256 checked) and its rule.

One place for both, used by serving, retraining, evaluation, health reports and the gate alike, so an offline
report judges exactly the policy that serves, and every artifact read back passes the same checks: its path
stays inside the artifact directory and its bytes match the registry's sha256 *before* they are deserialised
(scikit-learn and River artifacts are pickles, which run code as they load).
"""

from __future__ import annotations

from pathlib import Path

from banditgate.ledger.models import Generation, Policy
from banditgate.policies.exploration import ExplorationRule, Uniform, make_rule
from banditgate.policies.oracles import RewardOracle, load_oracle, sha256_hex


class ArtifactError(RuntimeError):
    """A generation's artifact is missing or does not match its recorded sha256."""


def load_artifact(generation: Generation, artifact_dir: Path) -> RewardOracle:
    """The generation's fitted oracle, refused unless the file lies inside ``artifact_dir`` and matches the
    registry's sha256; the bytes are deserialised only after both checks."""
    data = verified_artifact(generation, artifact_dir)
    try:
        return load_oracle(data)
    except Exception as exc:  # the registry's own bytes, yet not a model this version can load
        raise ArtifactError(f"cannot load {_what(generation, artifact_dir)}: {exc}") from exc


def verified_artifact(generation: Generation, artifact_dir: Path) -> bytes:
    """The bytes of the generation's artifact, read from inside ``artifact_dir`` and matching the registry's
    sha256 (:class:`ArtifactError` otherwise), not deserialised: a check that imports no model library."""
    path = artifact_file(artifact_dir, generation.artifact_path or "")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"cannot read {_what(generation, artifact_dir)}: {exc}") from exc
    digest = sha256_hex(data)
    if digest != generation.artifact_sha256:
        raise ArtifactError(
            f"{_what(generation, artifact_dir)} has sha256 {digest}, registry says {generation.artifact_sha256}: "
            "refusing to load it"
        )
    return data


def _what(generation: Generation, artifact_dir: Path) -> str:
    return f"artifact {artifact_dir / (generation.artifact_path or '')} of {generation.policy} gen {generation.number}"


def artifact_file(artifact_dir: Path, artifact_path: str) -> Path:
    """The file a registry row's ``artifact_path`` names, refused unless it lies inside ``artifact_dir``.

    Stored paths are relative (:func:`~banditgate.ledger.registry.store_artifact`); an absolute one, ``..`` or a
    symbolic link leading out of the directory would make the service read a file it did not write.

    >>> artifact_file(Path("/srv/artifacts"), "default/generation-00001.oracle").as_posix()
    '/srv/artifacts/default/generation-00001.oracle'
    >>> artifact_file(Path("/srv/artifacts"), "../../etc/passwd")
    Traceback (most recent call last):
    ...
    banditgate.ledger.artifacts.ArtifactError: artifact path '../../etc/passwd' leads outside the artifact directory
    """
    root = artifact_dir.resolve()
    path = (root / artifact_path).resolve()
    if not artifact_path or not path.is_relative_to(root) or path == root:
        raise ArtifactError(f"artifact path {artifact_path!r} leads outside the artifact directory")
    return path


def generation_rule(policy: Policy, generation: Generation) -> ExplorationRule:
    """The exploration rule ``generation`` serves with (see :class:`~banditgate.ledger.models.Policy`).

    Generation 0 has no oracle and is uniform. Otherwise the policy's rule and floor, refined by the
    generation's own parameters (e.g. its SquareCB gamma, and the floor retraining chose from the evidence)
    when it was trained for the same rule.
    """
    if generation.oracle is None:
        return Uniform()
    params = {**policy.exploration_params, "floor": policy.floor}
    if generation.exploration == policy.exploration:
        params.update(generation.exploration_params)
    return make_rule(policy.exploration, params)
