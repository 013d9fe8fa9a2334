"""Cross-model disagreement: greedy-action changes and total variation between two generations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banditgate.monitoring.proxies.disagreement import GREEDY_CAP, TV_CAP, disagreement_proxies

DEPLOYED = [[0.9, 0.1], [0.8, 0.1, 0.1], [0.5, 0.5], [1.0]]
CANDIDATE = [[0.1, 0.9], [0.6, 0.3, 0.1], [0.5, 0.5], [1.0]]


def test_hand_computed_disagreement_and_total_variation() -> None:
    greedy, tv = disagreement_proxies(
        DEPLOYED, CANDIDATE, [0, 0, 0, 0], [1, 0, 1, 0], deployed_generation=3, candidate_generation=4, min_rows=1
    )
    assert greedy.name == "greedy_disagreement" and greedy.category == "disagreement"
    assert greedy.statistic == 0.5  # decisions 0 and 2 (a tie broken the other way) change their greedy action
    assert greedy.status == "alert" and greedy.covers == ("reliability",)
    assert greedy.normalised == pytest.approx(1.0 - 0.5 / GREEDY_CAP)
    assert greedy.detail == {"n_decisions": 4, "deployed_generation": 3, "candidate_generation": 4, "n_changed": 2}

    # TV per decision: 0.8, (0.2 + 0.2 + 0) / 2 = 0.2, 0, 0.
    assert tv.name == "action_distribution_tv"
    assert tv.statistic == pytest.approx(0.25)
    assert tv.status == "alert" and tv.covers == ("reliability",)
    assert tv.normalised == pytest.approx(1.0 - 0.25 / TV_CAP)
    assert tv.detail["mean_tv_where_greedy_changed"] == pytest.approx(0.4)  # (0.8 + 0) / 2
    assert tv.detail["mean_tv_where_greedy_kept"] == pytest.approx(0.1)  # (0.2 + 0) / 2
    json.dumps([greedy.to_dict(), tv.to_dict()])


def test_numpy_generation_numbers_stay_json_serialisable() -> None:
    readings = disagreement_proxies(
        DEPLOYED, CANDIDATE, [0] * 4, [0] * 4, deployed_generation=np.int64(1), candidate_generation=np.int64(2),
        min_rows=1,
    )  # fmt: skip
    assert json.loads(json.dumps(readings[0].to_dict()))["detail"]["candidate_generation"] == 2


def test_identical_generations_read_zero_and_one() -> None:
    readings = disagreement_proxies(DEPLOYED, DEPLOYED, [0, 0, 1, 0], [0, 0, 1, 0], min_rows=1)
    assert [(r.statistic, r.normalised, r.status) for r in readings] == [(0.0, 1.0, "ok"), (0.0, 1.0, "ok")]
    assert readings[1].detail["mean_tv_where_greedy_changed"] is None


def test_opposite_deterministic_policies_disagree_everywhere() -> None:
    n = 200
    deployed, candidate = np.tile([1.0, 0.0], (n, 1)), np.tile([0.0, 1.0], (n, 1))
    greedy, tv = disagreement_proxies(deployed, candidate, np.zeros(n, int), np.ones(n, int))
    assert (greedy.statistic, tv.statistic) == (1.0, 1.0)
    assert (greedy.normalised, tv.normalised) == (0.0, 0.0)
    assert tv.detail["mean_tv_where_greedy_kept"] is None


def test_padded_matrices_with_action_counts_match_ragged_vectors() -> None:
    padded_deployed = np.array([[0.9, 0.1, 0.0], [0.8, 0.1, 0.1], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    padded_candidate = np.array([[0.1, 0.9, 0.0], [0.6, 0.3, 0.1], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    args = ([0, 0, 0, 0], [1, 0, 1, 0])
    ragged = disagreement_proxies(DEPLOYED, CANDIDATE, *args, min_rows=1)
    padded = disagreement_proxies(padded_deployed, padded_candidate, *args, n_actions=[2, 3, 2, 1], min_rows=1)
    assert [r.statistic for r in padded] == pytest.approx([r.statistic for r in ragged])


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 6), st.integers(1, 50), st.integers(0, 2**32 - 1))
def test_tv_is_a_mean_of_distances_in_the_unit_interval(k: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    p, q = rng.dirichlet(np.ones(k), n), rng.dirichlet(np.ones(k), n)
    g, h = p.argmax(axis=1), q.argmax(axis=1)
    greedy, tv = disagreement_proxies(p, q, g, h, min_rows=1)
    assert 0.0 <= tv.statistic <= 1.0
    assert tv.statistic == pytest.approx(float(np.mean(0.5 * np.abs(p - q).sum(axis=1))))
    assert greedy.statistic == pytest.approx(float(np.mean(g != h)))
    swapped = disagreement_proxies(q, p, h, g, min_rows=1)
    assert [r.statistic for r in swapped] == pytest.approx([greedy.statistic, tv.statistic])


@pytest.mark.parametrize(
    ("deployed", "candidate", "generations", "reason"),
    [
        (None, CANDIDATE, (None, 0), "no deployed generation to compare the candidate with"),
        (DEPLOYED, None, (2, None), "no candidate generation to compare with the deployed one"),
        (DEPLOYED, CANDIDATE, (0, 0), "the candidate is the deployed generation (0): nothing to compare"),
    ],
)
def test_without_a_pair_both_readings_are_unavailable(
    deployed: list | None, candidate: list | None, generations: tuple, reason: str
) -> None:
    readings = disagreement_proxies(
        deployed, candidate, None, None, deployed_generation=generations[0], candidate_generation=generations[1]
    )
    assert [r.name for r in readings] == ["greedy_disagreement", "action_distribution_tv"]
    for r in readings:
        assert r.status == "unavailable" and math.isnan(r.statistic) and r.normalised is None
        assert r.detail == {"reason": reason}
        assert r.covers == ("reliability",)


def test_too_few_decisions_are_unavailable() -> None:
    readings = disagreement_proxies(DEPLOYED, CANDIDATE, [0, 0, 0, 0], [1, 0, 1, 0])
    assert [r.status for r in readings] == ["unavailable"] * 2
    assert readings[0].detail["reason"] == "4 decisions scored by both generations, fewer than the 100 needed"
    empty = disagreement_proxies([], [], [], [])
    assert empty[0].detail["reason"] == "0 decisions scored by both generations, fewer than the 100 needed"


@pytest.mark.parametrize(
    ("candidate", "deployed_greedy", "candidate_greedy", "message"),
    [
        ([[0.1, 0.9], [0.6, 0.3, 0.1], [1.0, 0.0, 0.0], [1.0]], [0] * 4, [0] * 4, "same eligible actions"),
        (CANDIDATE[:3], [0] * 4, [0] * 3, "same eligible actions"),
        (CANDIDATE, [0, 0, 0, 0], [2, 0, 0, 0], "must index each decision's actions"),
        (CANDIDATE, [0, 0, 0, 1], [0, 0, 0, 0], "must index each decision's actions"),
        (CANDIDATE, [0, 0, 0, 0], [-1, 0, 0, 0], "must index each decision's actions"),
        (CANDIDATE, [0, 0, 0], [0, 0, 0, 0], "deployed_greedy must be 4 integer action indices"),
        (CANDIDATE, [0, 0, 0, 0], [0.0, 0.0, 0.0, 0.0], "candidate_greedy must be 4 integer action indices"),
        (CANDIDATE, [0, 0, 0, 0], None, "greedy actions are needed"),
    ],
)
def test_inconsistent_inputs_are_rejected(
    candidate: list, deployed_greedy: list, candidate_greedy: list | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        disagreement_proxies(DEPLOYED, candidate, deployed_greedy, candidate_greedy, min_rows=1)


def test_min_rows_is_validated() -> None:
    with pytest.raises(ValueError, match="min_rows"):
        disagreement_proxies(DEPLOYED, CANDIDATE, [0] * 4, [0] * 4, min_rows=0)
