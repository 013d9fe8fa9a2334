"""The X-Banditgate-Time header: simulated time for simulations, refused by a production server."""

from __future__ import annotations

from banditgate.service.settings import Settings
from tests.support.server import LiveServer

BODY = {"decision_id": "sim-1", "context": {"amount_eur": 3.0}, "actions": [{"id": "a"}, {"id": "b"}]}
WHEN = {"X-Banditgate-Time": "2026-03-01T09:30:00.123456+01:00"}


def test_simulated_clock_stamps_decisions_and_rewards(settings: Settings) -> None:
    with LiveServer(settings.model_copy(update={"simulated_clock": True})) as live, live.client() as client:
        decided = client.post("/v1/decisions", json=BODY, headers=WHEN).json()
        later = {"X-Banditgate-Time": "2026-04-15T00:00:00Z"}
        reward = client.post("/v1/rewards", json={"decision_id": "sim-1", "reward": 1}, headers=later).json()
        without_header = client.post("/v1/decisions", json={**BODY, "decision_id": "sim-2"})
    assert decided["decided_at"] == "2026-03-01T08:30:00.123Z"
    assert reward["received_at"] == reward["observed_at"] == "2026-04-15T00:00:00Z"
    assert without_header.json()["decided_at"] >= "2026-11"  # the wall clock


def test_a_production_server_refuses_the_header(server: LiveServer) -> None:
    with server.client() as client:
        response = client.post("/v1/decisions", json=BODY, headers=WHEN)
    assert response.status_code == 422 and "BANDITGATE_SIMULATED_CLOCK" in response.json()["message"]
    assert server.runtime.decision_log.get_decision("sim-1") is None


def test_a_malformed_time_is_refused(settings: Settings) -> None:
    with LiveServer(settings.model_copy(update={"simulated_clock": True})) as live, live.client() as client:
        naive = client.post("/v1/decisions", json=BODY, headers={"X-Banditgate-Time": "2026-03-01T09:30:00"})
        reward = {"decision_id": "sim-1", "reward": 1}
        garbage = client.post("/v1/rewards", json=reward, headers={"X-Banditgate-Time": "yesterday"})
        far = client.post("/v1/decisions", json=BODY, headers={"X-Banditgate-Time": "9999-12-31T00:00:00Z"})
    assert naive.status_code == 422 and "timezone" in naive.json()["message"]
    assert garbage.status_code == 422 and "X-Banditgate-Time" in garbage.json()["message"]
    # Logged, a decision of the year 9999 would overflow every later reading of the window (pandas ends in 2262).
    assert far.status_code == 422 and "outside the supported range" in far.json()["message"]
