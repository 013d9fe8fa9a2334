"""Named bad inputs through a real uvicorn server: never a 5xx, always the exact 4xx and a message naming the problem.

Bodies are sent as raw bytes, so the tests control exactly what is on the wire (NaN tokens, huge integers,
missing Content-Type). Every case runs on SQLite and on PostgreSQL, all of a module's cases against one server per
database (``module_server``): none of them may change what another one's answer is, and a server that has seen
them all must still answer the next one right.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import API_KEY
from tests.support.server import LiveServer

JSON = {"content-type": "application/json"}
ADMIN = {**JSON, "x-api-key": API_KEY}
MIB = 1024 * 1024

#: A decision logged before the reward cases run, so rewards reach the ledger instead of stopping at 404.
KNOWN_DECISION = "known-decision-1"
VALID_ACTIONS: list[dict[str, Any]] = [{"id": "route_a"}, {"id": "route_b", "features": {"fee_bps": 12}}]
VALID_DECISION: dict[str, Any] = {"context": {"amount_eur": 42.5, "issuer_country": "NL"}, "actions": VALID_ACTIONS}


def raw(document: Any) -> bytes:
    """``document`` as a sloppy client serialises it: NaN and Infinity become bare tokens."""
    return json.dumps(document, allow_nan=True).encode()


def decision(**changes: Any) -> bytes:
    """A valid decision body with some fields replaced (a value of ``...`` removes the field)."""
    body = {**VALID_DECISION, **changes}
    return raw({k: v for k, v in body.items() if v is not ...})


def reward(**changes: Any) -> bytes:
    """A valid reward body for the known decision with some fields replaced (``...`` removes the field)."""
    body = {"decision_id": KNOWN_DECISION, "reward": 1.0, "kind": "authorisation", **changes}
    return raw({k: v for k, v in body.items() if v is not ...})


def policy(**changes: Any) -> bytes:
    """A valid policy configuration with some fields replaced."""
    return raw({"exploration": "squarecb", "exploration_params": {"gamma": 50.0}, "floor": 0.02, **changes})


@dataclass(frozen=True)
class Bad:
    """One bad request and what the server must answer."""

    id: str
    body: bytes | None
    #: The status; a tuple only where 400 and 422 are equally right (a body that cannot be parsed at all).
    status: int | tuple[int, ...]
    #: Regular expressions (case-insensitive) that must all occur in the response's "message".
    mentions: tuple[str, ...]
    #: Request headers; ``None`` means the endpoint's usual ones (JSON, plus the API key for admin endpoints).
    headers: dict[str, str] | None = None

    def param(self) -> Any:
        """This case as a pytest parameter with a readable id."""
        return pytest.param(self, id=self.id)


def send(client: httpx.Client, method: str, path: str, case: Bad, headers: dict[str, str] = JSON) -> httpx.Response:
    """Send ``case`` with its own headers, or ``headers`` when it has none."""
    return client.request(
        method, path, content=case.body, headers=case.headers if case.headers is not None else headers
    )


def assert_refused(response: httpx.Response, case: Bad) -> None:
    """The exact 4xx, a JSON body, and a "message" that names the problem."""
    expected = case.status if isinstance(case.status, tuple) else (case.status,)
    assert response.status_code in expected, f"{case.id}: {response.status_code} {response.text[:500]}"
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    message = response.json().get("message")
    assert isinstance(message, str) and message, response.text[:500]
    for pattern in case.mentions:
        assert re.search(pattern, message, re.IGNORECASE), f"{case.id}: {pattern!r} not in message {message!r}"


def nested(depth: int) -> bytes:
    """A decision whose context value is ``depth`` nested arrays (past the JSON parser's recursion limit)."""
    return b'{"context":{"a":' + b"[" * depth + b"]" * depth + b'},"actions":[{"id":"x"}]}'


HUGE_INT = b"1" + b"0" * 400  # 10**400, valid JSON, beyond any 64-bit column
HUGER_INT = b"1" + b"0" * 5000  # beyond Python's default int-parsing limit (4300 digits)

DECISION_CASES = [
    Bad("missing-actions", decision(actions=...), 422, ("actions", "required")),
    Bad("empty-actions", decision(actions=[]), 422, ("actions", "at least 1")),
    Bad("duplicate-action-ids", decision(actions=[{"id": "a"}, {"id": "a"}]), 422, ("actions", "duplicate", "'a'")),
    Bad("65-actions", decision(actions=[{"id": f"a{i}"} for i in range(65)]), 422, ("actions", "64")),
    Bad("missing-context", decision(context=...), 422, ("context", "required")),
    Bad("nested-object-in-context", decision(context={"a": {"b": 1}}), 422, (r"context\.a", "nested")),
    Bad("array-in-context", decision(context={"a": [1, 2]}), 422, (r"context\.a", "array")),
    Bad("nan-token-in-context", b'{"context":{"a":NaN},"actions":[{"id":"x"}]}', 422, (r"context\.a", "finite")),
    Bad("infinity-token", b'{"context":{"a":Infinity},"actions":[{"id":"x"}]}', 422, (r"context\.a", "finite")),
    Bad("minus-infinity-token", b'{"context":{"a":-Infinity},"actions":[{"id":"x"}]}', 422, (r"context\.a", "finite")),
    Bad("1e400-overflows-to-infinity", b'{"context":{"a":1e400},"actions":[{"id":"x"}]}', 422, (r"context\.a",)),
    Bad(
        "nan-in-action-features",
        b'{"context":{},"actions":[{"id":"x","features":{"fee":NaN}}]}',
        422,
        (r"actions\.0\.features\.fee", "finite"),
    ),
    Bad(
        "huge-integer-10-pow-400", b'{"context":{"a":' + HUGE_INT + b'},"actions":[{"id":"x"}]}', 422, (r"context\.a",)
    ),
    Bad(
        "integer-over-4300-digits",
        b'{"context":{"a":' + HUGER_INT + b'},"actions":[{"id":"x"}]}',
        (400, 422),
        ("integer|digits|number",),
    ),
    Bad("string-over-256-chars", decision(context={"a": "x" * 257}), 422, (r"context\.a", "256")),
    Bad("context-key-over-64-chars", decision(context={"k" * 65: 1}), 422, ("context", "64")),
    Bad("empty-context-key", decision(context={"": 1}), 422, ("context",)),
    Bad("257-context-keys", decision(context={f"k{i}": i for i in range(257)}), 422, ("context", "256")),
    Bad("decision-id-129-chars", decision(decision_id="d" * 129), 422, ("decision_id", "128")),
    Bad("decision-id-with-spaces", decision(decision_id="tx 42"), 422, ("decision_id",)),
    Bad("empty-decision-id", decision(decision_id=""), 422, ("decision_id",)),
    Bad("context-is-a-list", decision(context=[1, 2]), 422, ("context", "dictionary|object")),
    Bad("actions-is-a-dict", decision(actions={"id": "x"}), 422, ("actions", "list|array")),
    Bad("action-id-is-a-number", decision(actions=[{"id": 7}]), 422, (r"actions\.0\.id", "string")),
    Bad("action-without-id", decision(actions=[{"features": {}}]), 422, (r"actions\.0\.id", "required")),
    Bad("action-features-is-a-list", decision(actions=[{"id": "x", "features": [1]}]), 422, (r"actions\.0",)),
    Bad("policy-is-a-number", decision(policy=5), 422, ("policy",)),
    Bad("policy-name-with-spaces", decision(policy="no such"), 422, ("policy",)),
    Bad("unknown-policy", decision(policy="nope"), 404, ("policy", "nope")),
    Bad("unknown-top-level-field", decision(colour="red"), 422, ("colour", "extra|not permitted")),
    Bad("unknown-action-field", decision(actions=[{"id": "x", "weight": 2}]), 422, (r"actions\.0\.weight",)),
    Bad("malformed-json", b'{"context": {', 422, ("json",)),
    Bad("empty-body", b"", 422, ("body|json",)),
    Bad("body-is-an-array", b"[]", 422, ("object",)),
    Bad("body-is-a-string", b'"hello"', 422, ("object",)),
    Bad("body-is-a-number", b"42", 422, ("object",)),
    Bad("body-is-null", b"null", 422, ("body",)),
    Bad("deeply-nested-json", nested(5_000), (400, 422), ("nest|deep|depth",)),
    Bad("missing-content-type", decision(), 422, ("content-type",), headers={}),
    Bad("text-plain-content-type", decision(), 422, ("content-type",), headers={"content-type": "text/plain"}),
    Bad("invalid-utf8", b'{"context":{"a":"\xff\xfe"},"actions":[{"id":"x"}]}', 422, ("json|utf|unicode|decode",)),
]

REWARD_CASES = [
    Bad("missing-decision-id", reward(decision_id=...), 422, ("decision_id", "required")),
    Bad("missing-reward", reward(reward=...), 422, ("reward", "required")),
    Bad("reward-is-a-string", reward(reward="1.0"), 422, ("reward", "number")),
    Bad("reward-is-true", reward(reward=True), 422, ("reward", "boolean")),
    Bad("reward-is-false", reward(reward=False), 422, ("reward", "boolean")),
    Bad("reward-is-null", reward(reward=None), 422, ("reward",)),
    Bad("reward-is-a-list", reward(reward=[1]), 422, ("reward",)),
    Bad("reward-nan-token", reward(reward=float("nan")), 422, ("reward", "finite")),
    Bad("reward-infinity-token", reward(reward=float("inf")), 422, ("reward", "finite")),
    Bad("reward-minus-infinity-token", reward(reward=float("-inf")), 422, ("reward", "finite")),
    Bad(
        "reward-huge-integer",
        b'{"decision_id":"' + KNOWN_DECISION.encode() + b'","reward":' + HUGE_INT + b"}",
        422,
        ("reward",),
    ),
    Bad("decision-id-129-chars", reward(decision_id="d" * 129), 422, ("decision_id", "128")),
    Bad("decision-id-with-spaces", reward(decision_id="tx 42"), 422, ("decision_id",)),
    Bad("decision-id-is-a-number", reward(decision_id=42), 422, ("decision_id",)),
    Bad("unknown-decision", reward(decision_id="never-decided"), 404, ("unknown decision", "never-decided")),
    Bad("observed-at-without-timezone", reward(observed_at="2026-11-25T14:00:00"), 422, ("observed_at", "timezone")),
    Bad("observed-at-not-a-date", reward(observed_at="yesterday"), 422, ("observed_at",)),
    Bad("observed-at-is-a-number", reward(observed_at=[2026]), 422, ("observed_at",)),
    Bad("observed-at-year-1-east-of-utc", reward(observed_at="0001-01-01T00:00:00+01:00"), 422, ("observed_at",)),
    Bad("observed-at-year-9999-west-of-utc", reward(observed_at="9999-12-31T23:59:59-01:00"), 422, ("observed_at",)),
    Bad("observed-at-year-9999", reward(observed_at="9999-12-31T00:00:00Z"), 422, ("observed_at", "supported range")),
    Bad("observed-at-year-1600", reward(observed_at="1600-01-01T00:00:00Z"), 422, ("observed_at", "supported range")),
    Bad("kind-with-spaces", reward(kind="charge back"), 422, ("kind",)),
    Bad("kind-uppercase", reward(kind="Chargeback"), 422, ("kind",)),
    Bad("kind-33-chars", reward(kind="k" * 33), 422, ("kind",)),
    Bad("kind-is-a-number", reward(kind=3), 422, ("kind",)),
    Bad("unknown-field", reward(amount=3), 422, ("amount", "extra|not permitted")),
    Bad("malformed-json", b'{"decision_id": ', 422, ("json",)),
    Bad("body-is-an-array", b"[1, 2]", 422, ("object",)),
    Bad("missing-content-type", reward(), 422, ("content-type",), headers={}),
]

POLICY_CASES = [
    Bad("unknown-exploration-rule", policy(exploration="thompson"), 422, ("exploration", "thompson")),
    Bad("unknown-exploration-param", policy(exploration_params={"gama": 5}), 422, ("gama",)),
    Bad("negative-gamma", policy(exploration_params={"gamma": -1}), 422, ("gamma",)),
    Bad("nan-gamma", policy(exploration_params={"gamma": float("nan")}), 422, ("gamma",)),
    Bad("gamma-is-a-string", policy(exploration_params={"gamma": "high"}), 422, ("gamma",)),
    Bad("gamma-huge-integer", b'{"exploration_params":{"gamma":' + HUGE_INT + b"}}", 422, ("gamma",)),
    Bad("epsilon-over-1", policy(exploration="epsilon_greedy", exploration_params={"epsilon": 2}), 422, ("epsilon",)),
    Bad(
        "zero-temperature", policy(exploration="softmax", exploration_params={"temperature": 0}), 422, ("temperature",)
    ),
    Bad("exploration-params-is-a-list", policy(exploration_params=[1]), 422, ("exploration_params",)),
    Bad("floor-over-1", policy(floor=1.5), 422, ("floor", "1")),
    Bad("negative-floor", policy(floor=-0.1), 422, ("floor", "0")),
    Bad("floor-nan-token", policy(floor=float("nan")), 422, ("floor",)),
    Bad("floor-is-a-string", policy(floor="high"), 422, ("floor",)),
    Bad("floor-inside-exploration-params", policy(exploration_params={"floor": 0.1}), 422, ("floor",)),
    Bad("unknown-oracle", policy(oracle="xgboost"), 422, ("oracle", "xgboost")),
    Bad("unknown-oracle-param", policy(oracle_params={"depth": 3}), 422, ("oracle", "depth")),
    Bad(
        "oracle-param-nan-token",
        policy(oracle_params={"learning_rate": float("nan")}),
        422,
        ("oracle_params|learning_rate",),
    ),
    Bad(
        "sklearn-estimator-outside-sklearn",
        policy(oracle="sklearn", oracle_params={"estimator": "os.system"}),
        422,
        ("estimator|sklearn",),
    ),
    Bad("description-over-2000-chars", policy(description="d" * 2001), 422, ("description", "2000")),
    Bad("unknown-field", policy(colour="red"), 422, ("colour", "extra|not permitted")),
    Bad("body-is-an-array", b"[]", 422, ("object",)),
    Bad("malformed-json", b"{", 422, ("json",)),
    Bad("missing-api-key", policy(), 401, ("x-api-key",), headers=JSON),
    Bad("wrong-api-key", policy(), 403, ("api key",), headers={**JSON, "x-api-key": "guess"}),
    Bad("empty-api-key", policy(), 401, ("x-api-key",), headers={**JSON, "x-api-key": ""}),  # an empty key is none
    Bad("missing-api-key-and-bad-body", b"[]", 401, ("x-api-key",), headers=JSON),
    Bad("x-actor-over-128-chars", policy(), 422, ("x-actor", "128"), headers={**ADMIN, "x-actor": "a" * 129}),
]


@pytest.fixture
def client(module_server: LiveServer) -> Iterator[httpx.Client]:
    """A client for the module's server with one decision already logged (``KNOWN_DECISION``)."""
    with module_server.client() as client:
        response = client.post("/v1/decisions", json={**VALID_DECISION, "decision_id": KNOWN_DECISION})
        assert response.status_code == 200, response.text
        yield client


@pytest.mark.parametrize("case", [c.param() for c in DECISION_CASES])
def test_bad_decision_request(client: httpx.Client, case: Bad) -> None:
    """``POST /v1/decisions`` refuses each bad body with its exact 4xx and a message naming the problem."""
    assert_refused(send(client, "POST", "/v1/decisions", case), case)


@pytest.mark.parametrize("case", [c.param() for c in REWARD_CASES])
def test_bad_reward_request(client: httpx.Client, case: Bad) -> None:
    """``POST /v1/rewards`` refuses each bad body with its exact 4xx and a message naming the problem."""
    assert_refused(send(client, "POST", "/v1/rewards", case), case)


@pytest.mark.parametrize("case", [c.param() for c in POLICY_CASES])
def test_bad_policy_request(client: httpx.Client, case: Bad) -> None:
    """``PUT /v1/policies/{name}`` (admin) refuses each bad request with its exact 4xx and a clear message."""
    assert_refused(send(client, "PUT", "/v1/policies/fuzzed", case, headers=ADMIN), case)


@pytest.mark.parametrize("path", ["/v1/decisions", "/v1/rewards", "/v1/policies/fuzzed"])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_over_one_mib_is_413(client: httpx.Client, path: str, chunked: bool) -> None:
    """A body over 1 MiB is refused with 413, whether its length is declared or it arrives chunked."""
    body = decision(context={"pad": "x" * 200}, padding="y" * MIB)
    content: bytes | Iterator[bytes] = (
        iter([body[i : i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
    )
    method = "PUT" if path.startswith("/v1/policies") else "POST"
    response = client.request(method, path, content=content, headers=ADMIN)
    assert_refused(response, Bad("over-1-mib", None, 413, ("body", "bytes")))


@pytest.mark.parametrize(
    "name",
    ["no such", "-leading-dash", "n" * 65, "semi;colon", "%00"],
    ids=["space", "dash", "65-chars", "semi", "nul"],
)
def test_bad_policy_name_in_path(client: httpx.Client, name: str) -> None:
    """A policy name outside ``[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`` is refused with 422 naming ``name``."""
    path = "/v1/policies/" + name  # httpx percent-encodes the space; "%00" is sent as is
    response = client.request("PUT", path, content=policy(), headers=ADMIN)
    assert_refused(response, Bad(f"policy-name-{name!r}", None, 422, ("name",)))


#: Strings that are valid JSON but that PostgreSQL cannot store in ``text``/``jsonb`` (NUL, lone surrogates).
UNSTORABLE = [
    pytest.param(decision(context={"a": "nul\u0000byte"}), "context", id="decision-nul-in-context-value"),
    pytest.param(decision(context={"nul\u0000key": 1}), "context", id="decision-nul-in-context-key"),
    pytest.param(b'{"context":{"a":"\\ud800"},"actions":[{"id":"x"}]}', "context", id="decision-lone-surrogate"),
    pytest.param(
        decision(actions=[{"id": "x", "features": {"f": "\u0000"}}]), "actions", id="decision-nul-in-action-features"
    ),
]
UNSTORABLE_POLICY = [
    pytest.param(policy(description="nul\u0000byte"), "description", id="policy-nul-in-description"),
    pytest.param(policy(reason="nul\u0000byte"), "reason", id="policy-nul-in-reason"),
    pytest.param(policy(oracle_params={"objective": "nul\u0000"}), "oracle_params", id="policy-nul-in-oracle-params"),
]


@pytest.mark.parametrize(("body", "field_name"), UNSTORABLE)
def test_unstorable_strings_in_a_decision_are_not_a_server_error(
    client: httpx.Client, body: bytes, field_name: str
) -> None:
    """NUL and lone surrogates: either logged (200) or refused with a 422 naming the field, never a 5xx."""
    response = client.post("/v1/decisions", content=body, headers=JSON)
    if response.status_code != 200:
        assert_refused(response, Bad("unstorable", body, 422, (field_name,)))


@pytest.mark.parametrize(("body", "field_name"), UNSTORABLE_POLICY)
def test_unstorable_strings_in_a_policy_are_not_a_server_error(
    client: httpx.Client, body: bytes, field_name: str
) -> None:
    """NUL in an admin configuration: either stored (200/201) or refused with a 422 naming the field."""
    response = client.put("/v1/policies/fuzzed", content=body, headers=ADMIN)
    if response.status_code not in (200, 201):
        assert_refused(response, Bad("unstorable", body, 422, (field_name,)))


def test_a_bad_decision_does_not_fail_the_others_in_its_batch(module_server: LiveServer) -> None:
    """Good decisions sent alongside unstorable ones all succeed: one client's bad row must not sink a batch."""
    poison = decision(context={"a": "nul\u0000byte"})
    bodies = [(False, decision(decision_id=f"good-{i}")) for i in range(48)]
    bodies[::4] = [(True, poison)] * len(bodies[::4])

    def post(item: tuple[bool, bytes]) -> tuple[bool, int, str]:
        bad, body = item
        with module_server.client() as client:
            response = client.post("/v1/decisions", content=body, headers=JSON)
        return bad, response.status_code, response.text[:200]

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(post, bodies))
    failed_good = [(status, text) for bad, status, text in results if not bad and status != 200]
    assert not failed_good, f"{len(failed_good)} valid decisions failed, e.g. {failed_good[0]}"
    assert all(status < 500 for _, status, _ in results), sorted({status for _, status, _ in results})


@pytest.mark.parametrize(
    ("path", "field_name"),
    [
        pytest.param("/v1/decisions/%00", "decision_id", id="decision-id-nul"),
        pytest.param("/v1/decisions/" + "d" * 129, "decision_id", id="decision-id-129-chars"),
        pytest.param("/v1/decisions/tx%2042", "decision_id", id="decision-id-with-space"),
        pytest.param("/v1/policies/%00", "name", id="policy-name-nul"),
        pytest.param("/v1/policies/" + "p" * 65, "name", id="policy-name-65-chars"),
    ],
)
def test_bad_identifier_in_a_read_path(client: httpx.Client, path: str, field_name: str) -> None:
    """Reads validate their path parameters like writes do: 422 naming it, never a 5xx or a lookup."""
    assert_refused(client.get(path), Bad(path, None, 422, (field_name,)))


@pytest.mark.parametrize(
    ("decision_id", "context"),
    [
        pytest.param("a/b", {}, id="slash-in-id"),
        pytest.param("/", {}, id="id-is-a-slash"),
        pytest.param("..", {}, id="id-is-dot-dot"),
        pytest.param("a?b#c%2F", {}, id="url-special-characters"),
        pytest.param("surrogate-1", {"a": "\ud800"}, id="lone-surrogate-in-context"),
    ],
)
def test_a_logged_decision_can_be_read_back(client: httpx.Client, decision_id: str, context: dict[str, Any]) -> None:
    """Whatever ``POST /v1/decisions`` logs, ``GET /v1/decisions/{id}`` (id percent-encoded) returns it.

    The server may instead refuse the decision up front with a 422 naming the field; it must not log a
    decision its own audit endpoint cannot show.
    """
    body = raw({"decision_id": decision_id, "context": context, "actions": VALID_ACTIONS})
    logged = client.post("/v1/decisions", content=body, headers=JSON)
    if logged.status_code != 200:
        assert_refused(logged, Bad("refused", body, 422, ("decision_id|context",)))
        return
    segment = quote(decision_id, safe="").replace(".", "%2E")
    response = client.get(f"/v1/decisions/{segment}")
    assert response.status_code == 200, f"GET /v1/decisions/{segment}: {response.status_code} {response.text[:300]}"
    assert response.json()["decision_id"] == decision_id


def test_unicode_in_an_error_message_is_not_a_server_error(client: httpx.Client) -> None:
    """An error message that quotes a client's lone surrogate is still sent (as JSON), not a 500."""
    body = b'{"exploration_params":{"\\ud800":1}}'
    response = client.put("/v1/policies/fuzzed", content=body, headers=ADMIN)
    assert_refused(response, Bad("surrogate-parameter-name", body, 422, ("exploration",)))


def unprintable(text: str) -> list[str]:
    """The characters of ``text`` that must never reach a client raw: controls, format characters, surrogates."""
    return [c for c in text if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")]


@pytest.mark.parametrize(
    ("body", "where", "what"),
    [
        (b'{"context": {"a": 1 "b": 2}, "actions": [{"id": "x"}]}', "line 1, column 21", "expected ',' or '}'"),
        (b'{\n  "context": {},\n  "actions": [{"id": "x"} {"id": "y"}]\n}', "line 3, column 27", "expected ',' or ']'"),
        (b'{"context": {"a": 1}, "actions" [{"id": "x"}]}', "line 1, column 33", "expected ':'"),
        (b'{"context": {', "line 1, column 14", "ends early"),
        (b'{"context": {}, "actions": [{"id": "x"}]} trailing', "line 1, column 43", "after the JSON document"),
    ],
    ids=["missing-comma-in-object", "missing-comma-in-array-line-3", "missing-colon", "truncated", "trailing-data"],
)
def test_malformed_json_says_where_and_what(client: httpx.Client, body: bytes, where: str, what: str) -> None:
    """A body that is not JSON gets a 422 naming the line, column and character, and what was expected there."""
    response = client.post("/v1/decisions", content=body, headers=JSON)
    assert_refused(response, Bad("malformed", body, 422, (re.escape(where), re.escape(what))))
    detail = response.json()["detail"][0]
    assert detail["type"] == "json_invalid"
    line, column = (int(n) for n in re.findall(r"\d+", where))
    assert (detail["line"], detail["column"]) == (line, column)


@pytest.mark.parametrize(
    "body",
    [
        # Raw control characters, an escape sequence, a right-to-left override and a CESU-8 lone surrogate
        # (Python's JSON decoder reads those bytes with surrogatepass) inside a malformed document.
        b'{"context": {"a": "\x1b[31mred\x07\xed\xa0\x80\xe2\x80\xae" 1}}',
        b'{"context": {"\x00\x1b[2J": \x01}}',
        # Valid JSON whose field names quote controls and a surrogate in the validation message.
        b'{"context": {"\\u001b[31m\\u2028": {"x": 1}}, "actions": [{"id": "x"}]}',
        b'{"context": {}, "actions": [{"id": "x"}], "\\u0007\\u202e": 1}',
    ],
    ids=["malformed-with-controls", "malformed-with-nul", "escaped-controls-in-key", "extra-field-with-controls"],
)
def test_error_messages_escape_unprintable_characters(client: httpx.Client, body: bytes) -> None:
    """Messages never carry a raw control character, format character or lone surrogate: they are escaped."""
    response = client.post("/v1/decisions", content=body, headers=JSON)
    assert response.status_code == 422, response.text
    document = response.json()
    assert not unprintable(document["message"]), document["message"]
    assert not unprintable(json.dumps(document["detail"], ensure_ascii=False)), document["detail"]
    assert "\\u00" in document["message"], document["message"]
