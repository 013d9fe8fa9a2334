"""GET /healthz and GET /metrics."""

from __future__ import annotations

import gc
import uuid

from prometheus_client.parser import text_string_to_metric_families

from banditgate.service.settings import Settings
from tests.conftest import API_KEY
from tests.support.server import LiveServer


def samples(text: str, name: str) -> list:
    return [s for family in text_string_to_metric_families(text) for s in family.samples if s.name == name]


def test_healthz(server: LiveServer) -> None:
    with server.client() as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok" and response.json()["policies"] == ["default"]


def test_metrics_count_decisions_per_policy_generation_action_and_exploration(server: LiveServer) -> None:
    # Metrics are process-wide and other tests decide too: count on a policy of this test's own.
    policy = f"metrics-{uuid.uuid4().hex[:8]}"
    body = {"context": {"x": 1}, "actions": [{"id": "metric_a"}, {"id": "metric_b"}], "policy": policy}
    with server.client() as client:
        client.put(f"/v1/policies/{policy}", json={}, headers={"X-API-Key": API_KEY}).raise_for_status()
        before = client.get("/metrics").text
        for _ in range(30):
            client.post("/v1/decisions", json=body)
        client.post("/v1/decisions", json={"context": {}, "actions": []})
        after = client.get("/metrics").text

    def decisions(text: str) -> float:
        return sum(
            s.value
            for s in samples(text, "banditgate_decisions_total")
            if s.labels["policy"] == policy and s.labels["generation"] == "0"
        )

    assert decisions(after) - decisions(before) == 30
    explored = [s for s in samples(after, "banditgate_decisions_total") if s.labels["policy"] == policy]
    assert {s.labels["action"] for s in explored} == {"metric_a", "metric_b"}
    assert {s.labels["explored"] for s in explored} == {"true"}  # generation 0 only explores
    latency = samples(after, "banditgate_http_request_duration_seconds_count")
    assert any(s.labels["route"] == "/v1/decisions" and s.value >= 31 for s in latency)
    statuses = {
        s.labels["status"]
        for s in samples(after, "banditgate_http_requests_total")
        if s.labels["route"] == "/v1/decisions"
    }
    assert {"200", "422"} <= statuses


def test_serving_collects_young_garbage_less_often(settings: Settings) -> None:
    before = gc.get_threshold()
    gc.set_threshold(700, *before[1:])
    try:
        with LiveServer(settings.model_copy(update={"gc_threshold": 12_345})) as live, live.client() as client:
            assert client.get("/healthz").status_code == 200
            assert gc.get_threshold() == (12_345, *before[1:])
    finally:
        gc.set_threshold(*before)
