"""Fuzzing the HTTP API through a real uvicorn server: whatever the body, never a 5xx.

Two generators, on SQLite and on PostgreSQL (the ``server`` fixture):

- Hypothesis: arbitrary JSON-like documents (NaN, infinities, huge integers, NUL, lone surrogates,
  nested objects), and valid decision and reward bodies with one part mutated. Sent as raw bytes, the way a
  sloppy client's ``json.dumps`` writes them (``allow_nan=True``: bare ``NaN`` tokens).
- Schemathesis: positive and negative cases for every operation of the app's own OpenAPI document, as
  served by the live server, with and without the admin key, checked for server errors, undocumented status
  codes, content types and bodies, and schema-invalid data that is accepted.

Every 4xx must carry a JSON body with a non-empty ``"message"``. The server's traceback of a failure is in
the test's captured output; the falsifying example (and a ``@reproduce_failure`` blob) in its report.
"""

from __future__ import annotations

import importlib
import itertools
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import httpx
import hypothesis.core
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.vendor import pretty
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import API_KEY
from tests.support.server import LiveServer

# Schemathesis replaces Hypothesis' example printer with a no-op for the whole process when its generation
# module is first imported (its pytest plugin does that on the first test call), so every falsifying example
# of the session would print as "document=,". Trigger the swap now, once, and undo it.
importlib.import_module("schemathesis.generation.hypothesis.builder")
hypothesis.core.RepresentationPrinter = pretty.RepresentationPrinter  # type: ignore[misc]

JSON = {"content-type": "application/json"}
#: Stands for "a decision that is logged" in generated rewards; the test substitutes a fresh one.
KNOWN_DECISION = "fuzz-known-decision"
_DECISION_NUMBERS = itertools.count()
FUZZ_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --------------------------------------------------------------------------------------------- strategies

#: Characters including NUL, other controls and lone surrogates (json.dumps writes them as \uXXXX escapes).
ANY_CHAR = st.characters(codec=None, categories=["L", "M", "N", "P", "S", "Z", "Cc", "Cf", "Cs"])
ANY_TEXT = st.text(ANY_CHAR, max_size=20) | st.sampled_from(["", " ", "\x00", "\ud800", "x" * 257, "NaN"])
KEYS = ANY_TEXT | st.sampled_from(["context", "actions", "id", "features", "decision_id", "reward", "kind"])
HUGE_INTS = st.sampled_from([2**63, -(2**63) - 1, 10**400, -(10**400), 2**64])
NUMBERS = (
    st.integers()
    | HUGE_INTS
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 5e-324])
)
SCALARS = st.none() | st.booleans() | NUMBERS | ANY_TEXT
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=12,
)

VALID_IDS = st.from_regex(r"[\x21-\x7e]{1,16}", fullmatch=True)
#: Printable text (no controls, no surrogates): what every client sends and every backend must store.
CLEAN_TEXT = st.text(st.characters(exclude_categories=["Cc", "Cs"]), max_size=16)
VALID_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63) + 1, 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | CLEAN_TEXT
)
VALID_FLAT = st.dictionaries(CLEAN_TEXT.filter(bool), VALID_SCALARS, max_size=5)


@st.composite
def valid_decisions(draw: st.DrawFn) -> dict[str, Any]:
    """A decision body the contract accepts, with printable strings."""
    ids = draw(st.lists(VALID_IDS, min_size=1, max_size=6, unique=True))
    body: dict[str, Any] = {
        "context": draw(VALID_FLAT),
        "actions": [{"id": i, "features": draw(VALID_FLAT)} for i in ids],
    }
    if draw(st.booleans()):
        body["decision_id"] = draw(VALID_IDS)
    if draw(st.booleans()):
        body["policy"] = draw(st.sampled_from(["default", "nope", "Default", "a.b-c_d"]))
    return body


@st.composite
def mutated_decisions(draw: st.DrawFn) -> dict[str, Any]:
    """A valid decision body with one part replaced, removed or added (often by a scalar, so that it may
    still be valid and reach the ledger: NUL, lone surrogates, huge numbers, long strings)."""
    body = draw(valid_decisions())
    where = draw(st.sampled_from(["top", "context", "actions", "action", "features", "drop", "duplicate"]))
    value = draw(SCALARS | JSON_VALUES)
    if where == "top":
        body[draw(KEYS)] = value
    elif where == "context":
        body["context"][draw(KEYS)] = value
    elif where == "actions":
        body["actions"] = value
    elif where == "action":
        body["actions"][draw(st.integers(0, len(body["actions"]) - 1))][draw(KEYS)] = value
    elif where == "features":
        body["actions"][0]["features"][draw(KEYS)] = value
    elif where == "drop":
        body.pop(draw(st.sampled_from(sorted(body))))
    else:
        body["actions"] = body["actions"] * draw(st.integers(2, 40))
    return body


def _timestamps() -> st.SearchStrategy[str]:
    offsets = st.integers(-24 * 60 + 1, 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
    # The edges of the calendar too: 0001-01-01 east of UTC or 9999-12-31 west of it is before/after datetime's range.
    naive = st.datetimes() | st.sampled_from([datetime.min, datetime.max])
    aware = st.builds(lambda d, tz: d.replace(tzinfo=tz).isoformat(), naive, offsets | st.just(UTC))
    return aware | naive.map(datetime.isoformat) | ANY_TEXT


@st.composite
def mutated_rewards(draw: st.DrawFn) -> dict[str, Any]:
    """A reward body for the known decision (or another id) with arbitrary values in its fields."""
    body: dict[str, Any] = {
        # The known decision twice, so that most examples get past the 404 and reach the ledger.
        "decision_id": draw(st.just(KNOWN_DECISION) | st.just(KNOWN_DECISION) | VALID_IDS | ANY_TEXT),
        "reward": draw(st.floats(-1e6, 1e6) | NUMBERS | JSON_VALUES),
    }
    if draw(st.booleans()):
        body["observed_at"] = draw(_timestamps() | _timestamps() | JSON_VALUES)
    if draw(st.booleans()):
        body["kind"] = draw(st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True) | ANY_TEXT | JSON_VALUES)
    if draw(st.integers(0, 9)) == 0:
        body[draw(KEYS)] = draw(JSON_VALUES)
    return body


@st.composite
def mutated_policies(draw: st.DrawFn) -> dict[str, Any]:
    """A policy configuration with fuzzed fields (rule, parameters, floor, oracle, free text)."""
    body: dict[str, Any] = {}
    if draw(st.booleans()):
        body["exploration"] = draw(st.sampled_from(["uniform", "epsilon_greedy", "softmax", "squarecb", "greedy"]))
    if draw(st.booleans()):
        names = st.sampled_from(["gamma", "epsilon", "temperature"]) | KEYS
        body["exploration_params"] = draw(st.dictionaries(names, NUMBERS | JSON_VALUES, max_size=2))
    if draw(st.booleans()):
        body["floor"] = draw(st.floats(0, 1) | NUMBERS | JSON_VALUES)
    if draw(st.booleans()):
        body["oracle"] = draw(st.sampled_from(["lightgbm", "sklearn", "river"]) | ANY_TEXT)
    if draw(st.booleans()):
        names = st.sampled_from(["learning_rate", "num_leaves", "estimator", "estimator_params", "model"]) | KEYS
        body["oracle_params"] = draw(st.dictionaries(names, NUMBERS | JSON_VALUES, max_size=2))
    for text_field in ("description", "reason"):
        if draw(st.booleans()):
            body[text_field] = draw(ANY_TEXT | JSON_VALUES)
    if draw(st.integers(0, 9)) == 0:
        body[draw(KEYS)] = draw(JSON_VALUES)
    return body


def encode(document: Any) -> bytes:
    """Serialise like a sloppy client: NaN and infinities as bare tokens, non-ASCII as \\u escapes."""
    return json.dumps(document, allow_nan=True).encode()


# ----------------------------------------------------------------------------------------------- checks


def assert_not_a_server_error(response: httpx.Response, body: bytes) -> None:
    """Below 500; a 4xx has a JSON body with a non-empty "message"."""
    sent = body[:300] + (b"..." if len(body) > 300 else b"")
    assert response.status_code < 500, f"{response.status_code} {response.text[:300]} for body {sent!r}"
    if response.status_code >= 400:
        try:
            message = response.json().get("message")
        except (ValueError, AttributeError):
            message = None
        assert isinstance(message, str) and message, f"no message: {response.status_code} {response.text[:300]}"


def assert_readable(client: httpx.Client, decision_id: str, body: bytes) -> None:
    """A logged decision can be read back: the audit trail must not fail on what the log accepted."""
    segment = quote(decision_id, safe="")
    if not segment.strip("."):  # "." and ".." would be removed from the URL as dot segments
        segment = segment.replace(".", "%2E")
    response = client.get(f"/v1/decisions/{segment}")
    assert response.status_code == 200, (
        f"GET /v1/decisions/{segment}: {response.status_code} {response.text[:300]} after logging {body[:300]!r}"
    )


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    """One HTTP client on the live server for all the examples of a test."""
    with server.client() as client:
        yield client


# ------------------------------------------------------------------------------------------------ tests


@FUZZ_SETTINGS
@given(document=JSON_VALUES | mutated_decisions())
def test_decisions_never_a_server_error(client: httpx.Client, document: Any) -> None:
    """``POST /v1/decisions`` with arbitrary JSON or a mutated valid body answers below 500.

    A decision it accepted can be read back with ``GET /v1/decisions/{id}``.
    """
    body = encode(document)
    response = client.post("/v1/decisions", content=body, headers=JSON)
    assert_not_a_server_error(response, body)
    if response.status_code == 200:
        assert_readable(client, response.json()["decision_id"], body)


@FUZZ_SETTINGS
@given(document=valid_decisions())
def test_valid_decisions_are_logged(client: httpx.Client, document: dict[str, Any]) -> None:
    """A body the contract accepts is logged (200) and readable, or refused only for an unknown policy (404).

    A client ``decision_id`` gets a unique suffix, so that no example replays or conflicts with an earlier one.
    """
    if "decision_id" in document:
        document = {**document, "decision_id": f"{document['decision_id']}~{next(_DECISION_NUMBERS)}"}
    body = encode(document)
    response = client.post("/v1/decisions", content=body, headers=JSON)
    assert_not_a_server_error(response, body)
    unknown_policy = document.get("policy") not in (None, "default")
    assert response.status_code == 200 or (response.status_code == 404 and unknown_policy), (
        f"{response.status_code} {response.text[:300]} for {body[:300]!r}"
    )
    if response.status_code == 200:
        assert_readable(client, response.json()["decision_id"], body)


@FUZZ_SETTINGS
@given(document=JSON_VALUES | mutated_rewards())
def test_rewards_never_a_server_error(client: httpx.Client, document: Any) -> None:
    """``POST /v1/rewards`` with arbitrary JSON or a reward with fuzzed fields answers below 500.

    Each example rewards a decision of its own, so that the outcome does not depend on earlier examples
    (a second identical reward is a duplicate that never reaches the insert).
    """
    if isinstance(document, dict) and document.get("decision_id") == KNOWN_DECISION:
        fresh = f"fuzz-reward-{next(_DECISION_NUMBERS)}"
        logged = client.post("/v1/decisions", json={"decision_id": fresh, "context": {}, "actions": [{"id": "a"}]})
        assert logged.status_code == 200, logged.text
        document = {**document, "decision_id": fresh}
    body = encode(document)
    assert_not_a_server_error(client.post("/v1/rewards", content=body, headers=JSON), body)


@FUZZ_SETTINGS
@given(document=JSON_VALUES | mutated_policies())
def test_policies_never_a_server_error(client: httpx.Client, document: Any) -> None:
    """``PUT /v1/policies/{name}`` (admin) with fuzzed configurations answers below 500 and reads back."""
    body = encode(document)
    response = client.put("/v1/policies/fuzzed", content=body, headers={**JSON, "x-api-key": API_KEY})
    assert_not_a_server_error(response, body)
    if response.status_code in (200, 201):
        read_back = client.get("/v1/policies/fuzzed")
        assert read_back.status_code == 200, f"GET: {read_back.status_code} {read_back.text[:300]}"


#: What every response must satisfy. Not ``positive_data_acceptance``: the schema cannot say which parameters
#: each exploration rule and oracle takes, so a schema-valid policy configuration may still get a 422.
SCHEMA_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
EXAMPLES_PER_OPERATION = 12


@pytest.mark.parametrize("api_key", [None, API_KEY], ids=["without-key", "with-key"])
def test_schemathesis(server: LiveServer, api_key: str | None) -> None:
    """Every operation of the served OpenAPI document, with and without the admin key, positive and negative
    cases: no server error, and status codes, content types and bodies as documented; data the document
    forbids is refused.

    Generic over the operations: whatever the document lists is tested. The failures of all operations are
    collected before the test fails, so that one does not hide another. The schema is loaded from the live
    server inside the test: the server (and its port) only exists per test.
    """
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json", timeout=30)
    headers = None if api_key is None else {"x-api-key": api_key}
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10, [op.label for op in operations]
    for operation in operations:
        has_input = any(
            len(part) for part in (operation.path_parameters, operation.query, operation.headers, operation.body)
        )
        modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE] if has_input else [GenerationMode.POSITIVE]
        strategy = st.one_of([operation.as_strategy(generation_mode=mode, headers=headers) for mode in modes])

        @settings(
            FUZZ_SETTINGS,
            max_examples=EXAMPLES_PER_OPERATION,
            phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: bounded time, curl to reproduce
        )
        @given(case=strategy)
        def call_and_check(case: schemathesis.Case) -> None:
            response = case.call(base_url=server.url, timeout=30)
            case.validate_response(response, checks=SCHEMA_CHECKS)

        try:
            call_and_check()
        except BaseException as exc:  # schemathesis raises a FailureGroup (a BaseExceptionGroup)
            if not isinstance(exc, Exception | BaseExceptionGroup):
                raise
            failures.append(f"{operation.label} ({'with' if api_key else 'without'} key): {exc}")
    assert not failures, "\n\n".join(failures)
