"""Proxy category 4, cross-model disagreement: the candidate generation against the deployed one.

Both generations score the same decisions (same contexts, same eligible actions, in the same order). With
``g_i``, ``h_i`` the deployed and candidate greedy actions (argmax of each oracle's scores) and ``p_i``,
``q_i`` their action distributions over decision ``i``'s ``K_i`` actions:

- greedy disagreement ``D = (1/n) sum_i 1[g_i != h_i]``, the share of decisions whose best action changes;
- mean total-variation distance ``TV = (1/n) sum_i (1/2) sum_a |p_ia - q_ia|``, how much probability mass
  the candidate moves, exploration included.

The labelled evidence comes from the deployed generation's actions. Where the candidate would act
differently, its quality rests on off-policy estimates alone, so both statistics measure how much of the
candidate's behaviour the evidence does not observe directly; they cover reliability. Retraining on a policy's
own logs can flip the best action of whole segments from one generation to the next (the "oscillation
effect" of arXiv 2412.00569), which shows up here before any label does.

A Jensen-Shannon divergence is deliberately not added: on these distributions it moves with TV, and each
proxy counts once in a dimension's mean, so a near-duplicate would double the weight of this category.

Reference: "Evidence sufficiency under delayed ground truth", arXiv 2604.15740 (proxy category 4); Adyen,
"Contextual Bandits in Payment Processing", arXiv 2412.00569 (generations and the oscillation effect).
"""

from __future__ import annotations

import numpy as np

from banditgate.monitoring.proxies.base import ProxyReading, reading, unavailable
from banditgate.monitoring.proxies.uncertainty import probability_matrix

CATEGORY = "disagreement"

#: Alert when one decision in five changes its best action; read 0 when half of them do (the candidate is
#: then mostly a different policy, whose behaviour the deployed generation's labels barely observe).
GREEDY_TRIGGER = 0.20
GREEDY_CAP = 0.50
#: TV on the same scale: for near-greedy policies it approximates the share of decisions that change hands.
TV_TRIGGER = 0.20
TV_CAP = 0.50

#: Decisions needed: a share's standard error is then at most 0.05, a quarter of the trigger.
MIN_ROWS = 100

COVERS = ("reliability",)


def disagreement_proxies(
    deployed_probs: object | None,
    candidate_probs: object | None,
    deployed_greedy: object | None,
    candidate_greedy: object | None,
    *,
    n_actions: object = None,
    deployed_generation: int | None = None,
    candidate_generation: int | None = None,
    min_rows: int = MIN_ROWS,
) -> list[ProxyReading]:
    """``greedy_disagreement`` and ``action_distribution_tv`` of the candidate against the deployed generation.

    Parameters
    ----------
    deployed_probs, candidate_probs
        Each generation's probability vectors over the same decisions (see
        :func:`~banditgate.monitoring.proxies.uncertainty.probability_matrix`), column ``a`` of a row being
        the same action for both; None when there is no such generation (then both readings are unavailable).
    deployed_greedy, candidate_greedy
        Each generation's greedy action per decision, as an index into the decision's actions.
    n_actions
        Action counts for padded 2-d probabilities (shared: the decisions are the same).
    deployed_generation, candidate_generation
        Generation numbers, for the detail; equal numbers mean there is nothing to compare (unavailable).
    min_rows
        Decisions needed, else both readings are unavailable.

    Examples
    --------
    >>> deployed = [[0.9, 0.1], [0.8, 0.1, 0.1], [0.5, 0.5], [1.0]]
    >>> candidate = [[0.1, 0.9], [0.8, 0.1, 0.1], [0.5, 0.5], [1.0]]
    >>> readings = disagreement_proxies(deployed, candidate, [0, 0, 0, 0], [1, 0, 0, 0], min_rows=1)
    >>> [(r.name, r.status, r.statistic) for r in readings]  # TV: (0.8 + 0 + 0 + 0) / 4
    [('greedy_disagreement', 'alert', 0.25), ('action_distribution_tv', 'alert', 0.2)]
    >>> disagreement_proxies(None, candidate, None, [1, 0, 0, 0])[0].detail["reason"]
    'no deployed generation to compare the candidate with'
    """
    reason = _nothing_to_compare(deployed_probs, candidate_probs, deployed_generation, candidate_generation)
    if reason is None and (deployed_greedy is None or candidate_greedy is None):
        raise ValueError("greedy actions are needed for both generations along with their probabilities")
    if isinstance(min_rows, bool) or not isinstance(min_rows, int | np.integer) or min_rows < 1:
        raise ValueError(f"min_rows must be a positive integer, got {min_rows!r}")
    if reason is None:
        deployed, mask = probability_matrix(deployed_probs, n_actions)
        candidate, candidate_mask = probability_matrix(candidate_probs, n_actions)
        if deployed.shape != candidate.shape or not np.array_equal(mask, candidate_mask):
            raise ValueError("both generations must be scored on the same decisions with the same eligible actions")
        n = deployed.shape[0]
        if n < min_rows:
            reason = f"{n} decisions scored by both generations, fewer than the {min_rows} needed"
    if reason is not None:
        return [
            unavailable(name, CATEGORY, reason, cap=cap, trigger=trigger, covers=COVERS)
            for name, cap, trigger in (
                ("greedy_disagreement", GREEDY_CAP, GREEDY_TRIGGER),
                ("action_distribution_tv", TV_CAP, TV_TRIGGER),
            )
        ]

    k = mask.sum(axis=1)
    g = _greedy(deployed_greedy, k, "deployed_greedy")
    h = _greedy(candidate_greedy, k, "candidate_greedy")
    changed = g != h
    tv = 0.5 * np.abs(deployed - candidate).sum(axis=1)
    detail = {
        "n_decisions": int(n),
        "deployed_generation": None if deployed_generation is None else int(deployed_generation),
        "candidate_generation": None if candidate_generation is None else int(candidate_generation),
    }
    return [
        reading(
            "greedy_disagreement",
            CATEGORY,
            float(changed.mean()),
            cap=GREEDY_CAP,
            trigger=GREEDY_TRIGGER,
            covers=COVERS,
            detail={**detail, "n_changed": int(changed.sum())},
        ),
        reading(
            "action_distribution_tv",
            CATEGORY,
            float(tv.mean()),
            cap=TV_CAP,
            trigger=TV_TRIGGER,
            covers=COVERS,
            # Where the greedy action stays, TV is pure exploration change; where it flips, the decision moves.
            detail={
                **detail,
                "mean_tv_where_greedy_changed": float(tv[changed].mean()) if changed.any() else None,
                "mean_tv_where_greedy_kept": float(tv[~changed].mean()) if not changed.all() else None,
            },
        ),
    ]


def _nothing_to_compare(
    deployed_probs: object | None, candidate_probs: object | None, deployed: int | None, candidate: int | None
) -> str | None:
    if deployed_probs is None:
        return "no deployed generation to compare the candidate with"
    if candidate_probs is None:
        return "no candidate generation to compare with the deployed one"
    if deployed is not None and deployed == candidate:
        return f"the candidate is the deployed generation ({deployed}): nothing to compare"
    return None


def _greedy(values: object, n_actions: np.ndarray, name: str) -> np.ndarray:
    greedy = np.asarray(values)
    if greedy.shape != n_actions.shape or greedy.dtype.kind not in "iu":
        raise ValueError(f"{name} must be {n_actions.size} integer action indices, one per decision")
    if np.any((greedy < 0) | (greedy >= n_actions)):
        raise ValueError(f"{name} must index each decision's actions: 0 <= index < its number of actions")
    return greedy
