"""The operator dashboard (``/ui``) through a real server: what the pages show and escape, the activity they poll,
and, in headless Chromium, that the charts draw and that promote and rollback go through the admin API."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.orm import Session

from banditgate.ledger import registry
from banditgate.ledger.activity import recent_activity
from banditgate.ledger.gate_evaluations import store_gate_evaluation
from tests.conftest import API_KEY
from tests.service.helpers import ACTIONS, train_oracle
from tests.support.server import LiveServer

ADMIN = {"X-API-Key": API_KEY, "X-Actor": "alice"}
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
NOW = datetime.now(UTC).replace(microsecond=0)


def ope_report(candidate: float, deployed: float) -> dict:
    """An OPE report as retraining stores it (``banditgate.pipelines.evaluation.evaluate_policies``)."""

    def estimates(value: float) -> dict:
        return {
            name: {"value": value, "ci_low": value - 0.02, "ci_high": value + 0.02, "std_error": 0.01, "ess": 800.0}
            for name in ("ips", "snips", "dm", "dr")
        }

    return {
        "n": 1200,
        "logged_reward": 0.71,
        "policies": {
            "candidate": {"exploration": "squarecb", "estimates": estimates(candidate)},
            "deployed": {"exploration": "uniform", "estimates": estimates(deployed)},
            "uniform": {"exploration": "uniform", "estimates": estimates(0.6)},
        },
    }


def gate_report(server: LiveServer, generation: int, as_of: datetime, level: str, score: float) -> dict:
    """A stored gate evaluation with the policy's configured options (so a promotion may rely on it)."""
    dims = {"completeness": score, "freshness": 0.95, "reliability": 0.9, "representativeness": 0.85}
    return {
        "policy": "default",
        "generation": generation,
        "as_of": as_of.isoformat(),
        "computed_at": as_of.isoformat(),
        "options": server.settings.gate_for("default").options().to_dict(),
        "level": level,
        "S": score,
        "S_proxy": score + 0.05,
        "level_proxy": level,
        "A": 1.0,
        "dimensions": {d: {"value": v} for d, v in dims.items()},
        "evidence_size": {"decisions": 5000, "labelled": 3100, "judged": 3100},
        "alerts": [{"kind": "proxy", "message": f"proxy score_psi is beyond its trigger {HOSTILE}"}],
        "proxies": [
            {
                "name": "score_psi",
                "category": "distribution",
                "status": "alert",
                "normalised": 0.4,
                "trigger": 0.5,
                "covers": ["representativeness"],
            },
        ],
        "label_latency": {"days_until_sufficient": 0.0 if level == "SUFFICIENT" else 4.5, "explanation": "labels"},
        "summary": f"default generation {generation}: S = {score:.3f} ({level})",
    }


def fill_dashboard(server: LiveServer) -> None:
    """Decisions and rewards through the API; candidates 1 (INSUFFICIENT evidence) and 2 (SUFFICIENT), each with
    a trained artifact, an OPE report and a week of stored gate evaluations."""
    with server.client() as client:
        for i in range(40):
            response = client.post("/v1/decisions", json={"context": {"amount_eur": 10.0 + i}, "actions": ACTIONS})
            assert response.status_code == 200, response.text
            if i % 2 == 0:
                reward = client.post("/v1/rewards", json={"decision_id": response.json()["decision_id"], "reward": 1})
                assert reward.status_code in (200, 201), reward.text
        description = client.put(
            "/v1/policies/default",
            json={"description": HOSTILE, "reason": "describe", "exploration": "squarecb", "oracle": "lightgbm"},
            headers=ADMIN,
        )
        assert description.status_code == 200, description.text
    oracle = train_oracle(0)
    artifact_dir = server.settings.artifact_dir

    def register(session: Session) -> None:
        for number, (candidate, final) in enumerate([(0.70, ("INSUFFICIENT", 0.3)), (0.78, ("SUFFICIENT", 0.9))], 1):
            path, digest = registry.store_artifact(artifact_dir, "default", number, oracle.to_bytes())
            generation = registry.register_generation(
                session,
                "default",
                artifact_path=path,
                artifact_sha256=digest,
                oracle=oracle.kind,
                oracle_params=oracle.hyperparameters(),
                exploration="squarecb",
                exploration_params={"gamma": 50.0},
            )
            generation.ope_report = ope_report(candidate, 0.62)
            for day in range(6, 0, -1):  # S rising over a week, the last one an hour ago
                score = final[1] * (1 - day / 12)
                level = "INSUFFICIENT" if score < 0.5 else "DEGRADED"
                store_gate_evaluation(session, gate_report(server, number, NOW - timedelta(days=day), level, score))
            store_gate_evaluation(session, gate_report(server, number, NOW - timedelta(hours=1), *final))

    server.runtime.writer.submit(register).result(timeout=30)


@pytest.fixture
def dashboard(server: LiveServer) -> LiveServer:
    fill_dashboard(server)
    return server


def test_the_policy_page_shows_lineage_ope_gate_and_audit_escaped(dashboard: LiveServer) -> None:
    with dashboard.client() as client:
        index = client.get("/ui")
        page = client.get("/ui/policies/default")
        gate_of_1 = client.get("/ui/policies/default", params={"generation": 1})
    assert index.status_code == page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert 'href="/ui/policies/default"' in index.text and "2: SUFFICIENT" in index.text
    html = page.text
    # Lineage, newest first: 2 a candidate, 1 rejected by its INSUFFICIENT evidence, 0 deployed at cold start.
    assert html.index('id="generation-2"') < html.index('id="generation-1"') < html.index('id="generation-0"')
    assert '<span class="state rejected">rejected</span>' in html and '<span class="state deployed">' in html
    assert "cold start: generation 0 is uniform random" in html
    assert html.count('<path class="edge"') == 2 and html.count('<g class="node') == 3  # 0 -> 1 and 0 -> 2
    assert "0.780" in html and "[0.760, 0.800]" in html  # OPE: the candidate's DR estimate and its interval
    # The gate of the newest candidate by default: its latest evaluation, alerts, proxies and the S series.
    assert "Sufficiency gate: generation 2" in html and 'id="gate-level">SUFFICIENT' in html
    assert '"S": [' in html and '"sufficient": [0.8,' in html and "score_psi" in html
    assert "Sufficiency gate: generation 1" in gate_of_1.text
    assert 'id="sufficient-on">' + (NOW - timedelta(hours=1) + timedelta(days=4.5)).strftime("%Y-%m-%d") in (
        gate_of_1.text
    )
    # Untrusted text (a description, an alert message) is escaped, never markup.
    assert HOSTILE not in html and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html


def test_dashboard_reads_refuse_bad_names_and_unknown_policies(server: LiveServer) -> None:
    with server.client() as client:
        assert client.get("/ui/policies/nope").status_code == 404
        assert client.get("/ui/policies/nope/activity").status_code == 404
        assert client.get("/ui/policies/..%2Fetc").status_code in (404, 422)
        assert client.get("/ui/policies/default", params={"generation": -1}).status_code == 422
        assert client.get("/ui/policies/default", params={"generation": "x"}).status_code == 422
        empty = client.get("/ui/policies/default")
    assert empty.status_code == 200 and 'id="no-evaluation"' in empty.text  # no candidate, no evaluation yet


def test_the_charting_library_and_the_page_script_are_served_from_the_package(server: LiveServer) -> None:
    with server.client() as client:
        uplot = client.get("/ui/static/uplot/uPlot.iife.min.js")
        licence = client.get("/ui/static/uplot/LICENSE")
        script = client.get("/ui/static/dashboard.js")
        outside = client.get("/ui/static/../app.py")
    assert uplot.status_code == 200 and "uPlot" in uplot.text and len(uplot.content) > 30_000
    assert licence.status_code == 200 and "MIT License" in licence.text
    assert script.status_code == 200 and "X-API-Key" in script.text
    assert outside.status_code == 404


def test_activity_counts_rates_actions_and_exploration_of_recent_decisions(dashboard: LiveServer) -> None:
    with dashboard.client() as client:
        activity = client.get("/ui/policies/default/activity").json()
    assert activity["decisions"] == 40 and sum(activity["actions"].values()) == 40
    assert activity["generations"] == {"0": 40}
    assert activity["exploration_share"] == 1.0  # generation 0 is uniform: every decision explores
    assert activity["rewards"] == [{"kind": "authorisation", "count": 20, "mean": 1.0}]
    assert sum(activity["timeline"]["decisions"]) == 40 and sum(activity["timeline"]["rewards"]) == 20


def test_exploration_is_a_choice_below_the_most_probable_action(sessions) -> None:
    """A trained generation explores when it picks an action other than its most probable one; a reward's latest
    revision counts, and a label arriving after the sample's last decision is not part of its rate."""
    from banditgate.ledger.models import Decision, Reward

    with sessions() as session, session.begin():
        registry.put_policy(session, "p", registry.PolicySpec(), actor="setup")
        for i, (generation, chosen) in enumerate([(1, "a"), (1, "b"), (1, "b"), (0, "a")]):
            session.add(
                Decision(
                    decision_id=f"d{i}",
                    policy="p",
                    generation=generation,
                    context={},
                    action_id=chosen,
                    actions=[{"id": "a"}, {"id": "b"}],
                    probabilities=[0.9, 0.1],
                    propensity=0.5,
                    exploration="squarecb",
                    exploration_params={},
                    draw=0.5,
                    request_sha256="0" * 64,
                    decided_at=NOW + timedelta(seconds=i),
                )
            )
        session.flush()
        for decision, kind, revision, value, after in [
            ("d0", "authorisation", 1, 0.0, timedelta(seconds=1)),
            ("d0", "authorisation", 2, 1.0, timedelta(seconds=2)),
            ("d1", "chargeback", 1, 1.0, timedelta(days=30)),
        ]:
            at = NOW + after
            session.add(
                Reward(decision_id=decision, kind=kind, revision=revision, value=value, observed_at=at, received_at=at)
            )
    with sessions() as session:
        activity = recent_activity(session, "p")
        latest_two = recent_activity(session, "p", limit=2)
    assert (activity.decisions, activity.explored, activity.actions) == (4, 3, {"b": 2, "a": 2})
    assert activity.generations == {0: 1, 1: 3} and activity.decisions_per_minute == pytest.approx(4 / 0.05)
    assert (latest_two.decisions, latest_two.explored) == (2, 2)
    assert [(r.kind, r.count, r.mean) for r in activity.rewards] == [("authorisation", 1, 1.0), ("chargeback", 1, 1.0)]
    assert sum(b.rewards for b in activity.timeline) == 1 and sum(b.decisions for b in activity.timeline) == 4
    assert activity.rewards_per_minute == pytest.approx(1 / 0.05)
    with pytest.raises(ValueError, match="limit"):
        recent_activity(session, "p", limit=0)


# --- in headless Chromium ---------------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's headless Chromium through its chromedriver (scripts/test installs both)."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        reason = "no chromium and chromium-driver (Debian packages; scripts/test installs them)"
        if os.environ.get("CI"):
            pytest.fail(f"Chromium is required in CI: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,2400",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def drawn_pixels(driver, chart: str, rgb: tuple[int, int, int]) -> int:
    """Pixels of colour ``rgb`` (a series' stroke) on the canvas of chart ``chart``."""
    return driver.execute_script(
        """
        const canvas = document.querySelector(arguments[0] + ' canvas');
        if (!canvas) return -1;
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let n = 0;
        for (let i = 0; i < data.length; i += 4) {
          if (Math.abs(data[i] - arguments[1]) < 12 && Math.abs(data[i + 1] - arguments[2]) < 12
              && Math.abs(data[i + 2] - arguments[3]) < 12 && data[i + 3] > 200) n++;
        }
        return n;
        """,
        chart,
        *rgb,
    )


def wait_for(driver, condition, timeout: float = 30.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: condition(d))


def deployed(server: LiveServer) -> int:
    return httpx.get(f"{server.url}/v1/policies/default", timeout=30).json()["deployed_generation"]


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the reads have their tests on both
def test_in_chromium_charts_draw_a_refusal_shows_and_an_allowed_promotion_deploys(
    dashboard: LiveServer, browser
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = browser
    driver.get(f"{dashboard.url}/ui/policies/default")
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
    # The gate chart draws S (its blue stroke) and the activity chart fills in from the poll.
    assert drawn_pixels(driver, "#gate-chart", (0x1F, 0x5F, 0xBF)) > 100
    wait_for(driver, lambda d: d.find_element(By.ID, "decisions-read").text == "40")
    assert drawn_pixels(driver, "#activity-chart", (0x1F, 0x5F, 0xBF)) > 50
    assert driver.find_element(By.ID, "exploration-share").text == "100.0 %"
    assert len(driver.find_elements(By.CSS_SELECTOR, "#action-mix meter")) == 3

    # Candidate 1's evidence is INSUFFICIENT: the gate refuses, the page says why, nothing changes.
    driver.find_element(By.ID, "api-key").send_keys(API_KEY)
    driver.find_element(By.ID, "actor").send_keys("alice")
    driver.find_element(By.ID, "reason").send_keys("OPE +8% over the deployed generation")
    Select(driver.find_element(By.ID, "promote-generation")).select_by_value("1")
    driver.find_element(By.ID, "promote").click()
    result = wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#transition-result.refused"))
    assert "Refused (409)" in result.text and "The gate: evidence is INSUFFICIENT (S = 0.300)" in result.text, (
        result.text
    )
    assert deployed(dashboard) == 0

    # Candidate 2's is SUFFICIENT: promoted, by alice and why, and the page shows the new deployed generation.
    Select(driver.find_element(By.ID, "promote-generation")).select_by_value("2")
    driver.find_element(By.ID, "promote").click()
    result = wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#transition-result.done"))
    assert "generation 2 is deployed (it replaced generation 0)" in result.text, result.text
    assert driver.find_element(By.ID, "deployed-generation").text == "generation 2"
    assert deployed(dashboard) == 2
    with dashboard.client() as client:
        promoted = client.get("/v1/policies/default/generations/2").json()
    assert (promoted["promoted_by"], promoted["promoted_reason"]) == ("alice", "OPE +8% over the deployed generation")

    # A rollback from the reloaded page redeploys generation 0; a wrong key is refused first.
    driver.get(f"{dashboard.url}/ui/policies/default")
    assert "generation 2" in driver.find_element(By.ID, "deployed-generation").text
    driver.find_element(By.ID, "api-key").send_keys("wrong")
    driver.find_element(By.ID, "reason").send_keys("roll back")
    driver.find_element(By.ID, "rollback").click()
    result = wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#transition-result.refused"))
    assert "Refused (403): wrong API key" in result.text
    key = driver.find_element(By.ID, "api-key")
    key.clear()
    key.send_keys(API_KEY)
    driver.find_element(By.ID, "rollback").click()
    wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#transition-result.done"))
    assert deployed(dashboard) == 0
