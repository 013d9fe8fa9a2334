"""The in-process decision: score the candidates, explore, draw reproducibly, build the record to log."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from banditgate.ledger.records import DEFAULT_SEGMENT_KEYS, DecisionRecord, segment_values
from banditgate.ledger.registry import UnknownPolicy
from banditgate.policies.actions import Action, Scalar
from banditgate.policies.exploration import Uniform
from banditgate.policies.sampling import choose, uniform_draw
from banditgate.service.clock import now_ms
from banditgate.service.decision_ids import DecisionIds
from banditgate.service.policy_cache import PolicyCache

log = logging.getLogger(__name__)
_FALLBACK = Uniform()
_IDS = DecisionIds()  # one per process: it re-seeds itself in forked children


class Decider:
    """Makes decisions from the policies a :class:`PolicyCache` holds.

    If a policy's oracle fails on a request, the decision falls back to uniform random (recorded as
    ``exploration="uniform"`` with ``"fallback"`` in its parameters) rather than failing the payment.
    ``segment_keys`` names, per policy, the context keys its gate segments by; their values are logged with
    each decision (default: :data:`~banditgate.ledger.records.DEFAULT_SEGMENT_KEYS` for every policy).
    """

    def __init__(
        self,
        cache: PolicyCache,
        default_policy: str,
        segment_keys: Callable[[str], Sequence[str]] | None = None,
    ) -> None:
        self.cache = cache
        self.default_policy = default_policy
        self.segment_keys = segment_keys or (lambda _policy: DEFAULT_SEGMENT_KEYS)
        self.fallbacks = 0

    def decide(
        self,
        context: Mapping[str, Scalar],
        actions: Sequence[Mapping[str, Any]],
        decision_id: str | None = None,
        policy: str | None = None,
        now: datetime | None = None,
    ) -> tuple[DecisionRecord, bool]:
        """Decide for one transaction. Returns the record to log and whether the oracle's best was chosen.

        ``actions`` are ``{"id": ..., "features": {...}}`` objects, already validated; ``now`` is the
        decision time (default: the wall clock, to the millisecond).
        """
        name = policy or self.default_policy
        serving = self.cache.get(name)
        if serving is None:
            raise UnknownPolicy(name)
        decision_id = decision_id or _IDS.next()
        candidates = [Action(a["id"], a.get("features") or {}) for a in actions]
        rule = serving.rule
        params = rule.params()
        scores = None
        if serving.oracle is not None:
            try:
                scores = serving.oracle.predict_decision(context, candidates).tolist()
                probabilities = rule.probability_list(scores)
            except Exception as exc:
                self.fallbacks += 1
                log.warning(
                    "policy %s gen %d: oracle failed (%s); falling back to uniform", name, serving.generation, exc
                )
                scores, rule = None, _FALLBACK
                params = {**rule.params(), "fallback": f"{type(exc).__name__}: {exc}"[:200]}
        if scores is None:
            probabilities = rule.probability_list([0.0] * len(candidates))
        draw = uniform_draw(decision_id, name, serving.generation)
        index = choose(probabilities, draw)
        exploited = scores is not None and scores[index] >= max(scores)
        record = DecisionRecord(
            decision_id=decision_id,
            policy=name,
            generation=serving.generation,
            context=dict(context),
            actions=[{"id": a["id"], "features": dict(a.get("features") or {})} for a in actions],
            probabilities=probabilities,
            action_id=candidates[index].id,
            propensity=probabilities[index],
            exploration=rule.name,
            exploration_params=params,
            model_sha256=serving.model_sha256,
            draw=draw,
            request_sha256=request_fingerprint(name, context, actions),
            decided_at=now or now_ms(),
            segment_values=segment_values(context, self.segment_keys(name)),
        )
        return record, exploited


def request_fingerprint(policy: str, context: Mapping[str, Any], actions: Sequence[Mapping[str, Any]]) -> str:
    """Hash of what was asked, to tell an idempotent retry from a different request reusing an id.

    Equal fingerprints mean the same request; different ones need not mean a different request (``1`` and
    ``1.0`` serialise differently): :func:`same_request` decides then.
    """
    canonical = orjson.dumps({"policy": policy, "context": context, "actions": actions}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def same_request(logged: DecisionRecord, asked: DecisionRecord) -> bool:
    """Whether ``asked`` repeats the request ``logged`` answered: same policy, same context and same actions in
    the same order, keys in any order and numbers compared by value (``1`` is ``1.0``, but ``true`` is not ``1``).

    The fingerprints settle the common case; only a retry whose fingerprint differs compares the logged
    context and actions themselves, so the decision path pays nothing for it, and decisions logged under any
    fingerprint format compare correctly.

    >>> from dataclasses import replace
    >>> first = DecisionRecord("tx", "p", 0, {"amount": 1.0, "nl": True}, [{"id": "a", "features": {}}], [1.0],
    ...                        "a", 1.0, "uniform", {}, None, 0.5, "f1", datetime(2026, 12, 1, tzinfo=UTC))
    >>> same_request(first, replace(first, context={"nl": True, "amount": 1}, request_sha256="f2"))
    True
    >>> same_request(first, replace(first, context={"amount": 1.0, "nl": 1}, request_sha256="f3"))
    False
    """
    if logged.request_sha256 == asked.request_sha256:
        return True
    return (
        logged.policy == asked.policy
        and _same_values(logged.context, asked.context)
        and len(logged.actions) == len(asked.actions)
        and all(
            a["id"] == b["id"] and _same_values(a.get("features") or {}, b.get("features") or {})
            for a, b in zip(logged.actions, asked.actions, strict=True)
        )
    )


def _same_values(logged: Mapping[str, Any], asked: Mapping[str, Any]) -> bool:
    return logged.keys() == asked.keys() and all(_same_value(logged[k], asked[k]) for k in logged)


def _same_value(logged: Any, asked: Any) -> bool:
    # Requests hold flat JSON scalars; a boolean equals 1 or 0 in Python but is not the same JSON value.
    if isinstance(logged, bool) or isinstance(asked, bool) or logged is None or asked is None:
        return logged is asked
    if isinstance(logged, int | float) and isinstance(asked, int | float):
        return logged == asked
    return type(logged) is type(asked) and logged == asked


def format_timestamp(value: datetime) -> str:
    """``2026-11-25T14:00:00.123Z``."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
