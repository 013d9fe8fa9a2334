"""Artifacts read back from disk: inside the artifact directory, sha256 checked before a byte is unpickled."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger import registry
from banditgate.ledger.artifacts import ArtifactError, artifact_file, load_artifact
from banditgate.ledger.models import Generation
from banditgate.monitoring.gate import evaluate_gate
from banditgate.pipelines.evaluation import evaluated_generation
from banditgate.pipelines.health import generation_health
from banditgate.policies.actions import Action
from banditgate.policies.oracles import ARTIFACT_MAGIC, SklearnOracle, load_oracle, records_to_frame, sha256_hex
from banditgate.service.policy_cache import serving_policy


class _CreatesFile:
    """Unpickling this creates ``path``: a stand-in for any code a pickle can run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def _poisoned(marker: Path) -> bytes:
    return ARTIFACT_MAGIC + b"sklearn\n" + pickle.dumps({"estimator": _CreatesFile(marker)})


def _oracle_bytes() -> bytes:
    frame = records_to_frame([{"x": float(i % 7)} for i in range(60)], [Action("a"), Action("b")] * 30)
    return SklearnOracle("ridge").fit(frame, np.arange(60.0) % 2).to_bytes()


def _register(sessions: sessionmaker[Session], artifact_dir: Path, path: str | None = None) -> Generation:
    """Policy ``routing`` with generation 1 stored (a real sklearn oracle) and deployed: the row, detached."""
    data = _oracle_bytes()
    with sessions() as session, session.begin():
        registry.put_policy(session, "routing", registry.PolicySpec(), actor="test")
        stored, digest = registry.store_artifact(artifact_dir, "routing", 1, data)
        generation = registry.register_generation(
            session,
            "routing",
            artifact_path=path or stored,
            artifact_sha256=digest,
            oracle="sklearn",
            oracle_params={},
            exploration="squarecb",
            exploration_params={},
        )
        registry.deploy_generation(session, "routing", 1, actor="test", reason="test")
        session.expunge(generation)
    return generation


def test_the_poisoned_artifact_would_run_code_if_unpickled(tmp_path: Path) -> None:
    """The payload of the tests below is live: loading it without the checks creates its marker."""
    marker = tmp_path / "ran"
    with pytest.raises(Exception):  # noqa: B017 - what fails after the code ran is irrelevant
        load_oracle(_poisoned(marker))
    assert marker.exists()


def _serve(sessions: sessionmaker[Session], artifact_dir: Path) -> object:
    with sessions() as session:
        policy = registry.get_policy(session, "routing")
        return serving_policy(policy, registry.get_generation(session, "routing", 1), artifact_dir)


def _evaluate(sessions: sessionmaker[Session], artifact_dir: Path) -> object:
    with sessions() as session:
        policy = registry.get_policy(session, "routing")
        return evaluated_generation("candidate", policy, registry.get_generation(session, "routing", 1), artifact_dir)


def _gate(sessions: sessionmaker[Session], artifact_dir: Path) -> object:
    with sessions() as session:
        return evaluate_gate(session, artifact_dir, "routing", 1)


def _health(sessions: sessionmaker[Session], artifact_dir: Path) -> object:
    from banditgate.ledger.models import Decision
    from banditgate.ledger.types import utcnow

    with sessions() as session, session.begin():  # generation 1 served a decision, so health loads it
        session.add(
            Decision(
                decision_id="d1",
                policy="routing",
                generation=1,
                context={},
                actions=[{"id": "a", "features": {}}],
                probabilities=[1.0],
                action_id="a",
                propensity=1.0,
                exploration="squarecb",
                exploration_params={},
                model_sha256=None,
                draw=0.5,
                request_sha256="0" * 64,
                decided_at=utcnow(),
            )
        )
    return generation_health(sessions, artifact_dir, "routing")


LOAD_PATHS: dict[str, Callable[[sessionmaker[Session], Path], object]] = {
    "serving": _serve,
    "evaluate-and-retrain": _evaluate,
    "gate": _gate,
    "health": _health,
}


@pytest.mark.parametrize("load", LOAD_PATHS.values(), ids=LOAD_PATHS.keys())
def test_a_replaced_artifact_is_refused_before_unpickling_on_every_load_path(
    sessions: sessionmaker[Session], tmp_path: Path, load: Callable[[sessionmaker[Session], Path], object]
) -> None:
    artifact_dir = tmp_path / "artifacts"
    generation = _register(sessions, artifact_dir)
    marker = tmp_path / "ran"
    (artifact_dir / generation.artifact_path).write_bytes(_poisoned(marker))
    with pytest.raises(ArtifactError, match=r"sha256 \w+, registry says \w+: refusing to load it"):
        load(sessions, artifact_dir)
    assert not marker.exists()


@pytest.mark.parametrize("where", ["absolute", "dot-dot", "symlink"])
def test_an_artifact_path_leading_out_of_the_artifact_directory_is_refused(
    sessions: sessionmaker[Session], tmp_path: Path, where: str
) -> None:
    """A crafted registry row must not make the service read a file it did not write, even one whose sha256 it
    names: the old code loaded an absolute path as it was."""
    artifact_dir = tmp_path / "artifacts"
    outside = tmp_path / "elsewhere" / "model.oracle"
    outside.parent.mkdir()
    marker = tmp_path / "ran"
    data = _poisoned(marker)
    outside.write_bytes(data)
    path = {"absolute": str(outside), "dot-dot": "../elsewhere/model.oracle", "symlink": "routing/link.oracle"}[where]
    generation = _register(sessions, artifact_dir, path)
    if where == "symlink":
        (artifact_dir / path).symlink_to(outside)
    generation.artifact_sha256 = sha256_hex(data)
    with pytest.raises(ArtifactError, match="outside the artifact directory"):
        load_artifact(generation, artifact_dir)
    assert not marker.exists()


def test_stored_paths_inside_the_directory_load(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    artifact_dir = tmp_path / "artifacts"
    generation = _register(sessions, artifact_dir)
    assert artifact_file(artifact_dir, generation.artifact_path) == (artifact_dir / "routing").resolve() / (
        "generation-00001.oracle"
    )
    assert isinstance(load_artifact(generation, artifact_dir), SklearnOracle)
    absolute = str((artifact_dir / generation.artifact_path).resolve())  # as a ledger may hold it
    generation.artifact_path = absolute
    assert isinstance(load_artifact(generation, artifact_dir), SklearnOracle)


@pytest.mark.parametrize("name", ["../outside", "a/b", "/abs", "default\n", ".hidden", ""])
def test_a_policy_name_cannot_name_a_path(sessions: sessionmaker[Session], tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="invalid policy name"):
        registry.store_artifact(tmp_path / "store" / "artifacts", name, 1, b"data")
    with sessions() as session, pytest.raises(ValueError, match="invalid policy name"):
        registry.put_policy(session, name, registry.PolicySpec(), actor="test")
    assert not (tmp_path / "store").exists() and not (tmp_path / "outside").exists()
