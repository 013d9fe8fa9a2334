"""``banditgate demo``: a short run through the command line, its reports, its refusals, and the page in a browser.

One small run (14 days, 110 payments a day) is shared by the tests of this module. The demo's gate asks for as
many labelled decisions after a candidate's training window as an average day brings, so the weekday seasonality
of the traffic gives both verdicts (SUFFICIENT and promoted on busy days, INSUFFICIENT and refused on quiet ones).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from banditgate.service.cli import app
from banditgate.service.commands.exits import EXIT_USAGE
from banditgate.service.demo_report import SECTIONS

#: One worker runs them all, so that the shared demo run is made once (scripts/test runs two workers).
pytestmark = pytest.mark.xdist_group("demo_cli")

runner = CliRunner()
SMALL = ["--days", "14", "--decisions-per-day", "110", "--seed", "3"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    out = tmp_path_factory.mktemp("demo") / "run"
    result = runner.invoke(app, ["demo", *SMALL, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result


def _report(out: Path) -> dict[str, Any]:
    return json.loads((out / "report.json").read_text())


def test_the_demo_writes_both_reports_and_a_summary(demo_run: tuple[Path, Any]) -> None:
    out, result = demo_run
    names = sorted(p.name for p in out.iterdir())
    assert names == [".banditgate-demo", "artifacts", "ledger.db", "report.html", "report.json"]
    assert "banditgate demo" in result.stdout and "generations that served" in result.stdout
    assert f"wrote {out / 'report.html'}" in result.stdout
    report = _report(out)
    assert report["days"] == 14 and report["decisions_per_day"] == 110 and report["failed_requests"] == 0
    assert report["decisions"] == sum(day["decisions"] for day in report["per_day"]) > 14 * 80
    assert [day["day"] for day in report["per_day"]] == list(range(14))
    # the drift starts half-way: nothing before day 7, something after
    assert all(day["concept_drift"] == 0.0 for day in report["per_day"][:7])
    assert report["per_day"][-1]["concept_drift"] > 0.0


def test_reward_per_generation_stands_against_the_best_action_and_uniform(demo_run: tuple[Path, Any]) -> None:
    report = _report(demo_run[0])
    served = [g for g in report["generations"] if g["decisions_served"]]
    assert len(served) >= 2  # generation 0 and at least one promoted generation
    for g in served:
        assert g["served_uniform"] - 0.05 < g["served_reward"] <= g["served_best"] + 1e-12
    assert sum(g["decisions_served"] for g in served) == report["decisions"]


def test_every_candidate_has_its_exploration_ess_estimates_and_true_value(demo_run: tuple[Path, Any]) -> None:
    report = _report(demo_run[0])
    trained = [g for g in report["generations"] if g["trained_on_day"] is not None]
    assert trained
    for g in trained:
        assert 0.0 <= g["exploration_share"] <= 1.0 and g["ess"] > 0.0
        assert set(g["estimates"]) == {"dr", "snips", "ips", "dm"}
        dr = g["estimates"]["dr"]
        assert dr["ci_low"] <= dr["value"] <= dr["ci_high"]
    judged = [g for g in trained if g["judged_on_day"] is not None]
    assert judged and all(0.5 < g["true_value"] < 1.0 for g in judged)
    assert all(g["judged_on_day"] == g["trained_on_day"] + 1 for g in judged)


def test_gate_verdicts_include_a_promotion_and_a_refusal(demo_run: tuple[Path, Any]) -> None:
    report = _report(demo_run[0])
    promotions = report["promotions"]
    allowed = [p for p in promotions if p["allowed"]]
    refused = [p for p in promotions if not p["allowed"]]
    assert allowed and refused, [(p["level"], p["message"]) for p in promotions]
    assert all(p["level"] == "SUFFICIENT" for p in allowed)
    assert all(p["level"] != "SUFFICIENT" and "evidence is" in p["message"] for p in refused)
    # the deployed generation at the end is the last one promoted, and only it is deployed
    deployed = [g["number"] for g in report["generations"] if g["status"] == "deployed"]
    assert deployed == [allowed[-1]["generation"]]
    assert {g["number"] for g in report["generations"] if g["status"] == "refused"} == {
        p["generation"] for p in refused
    }


def test_sufficiency_over_time_shows_the_chargeback_blind_period(demo_run: tuple[Path, Any]) -> None:
    gates = _report(demo_run[0])["gates"]
    candidates = [g for g in gates if g["reward_kind"] == "authorisation"]
    chargebacks = [g for g in gates if g["reward_kind"] == "chargeback"]
    assert len(candidates) == len(_report(demo_run[0])["promotions"])
    assert [g["day"] for g in chargebacks] == [4, 9]
    for g in gates:
        assert set(g["dimensions"]) == {"completeness", "freshness", "reliability", "representativeness"}
    # two weeks in, no chargeback can have arrived (45 days at least): the blind period
    assert all(g["labelled"] == 0 and g["S"] == 0.0 and g["level"] == "INSUFFICIENT" for g in chargebacks)
    assert all(g["dimensions"]["completeness"] == 1.0 for g in candidates)


def test_the_page_has_every_section_with_its_chart_and_fetches_nothing(demo_run: tuple[Path, Any]) -> None:
    page = (demo_run[0] / "report.html").read_text()
    sections = re.findall(r'<section id="([a-z]+)">(.*?)</section>', page, re.DOTALL)
    assert [name for name, _ in sections] == list(SECTIONS)
    for name, body in sections:
        assert ("<svg" in body) == (name != "verdicts"), name
    verdicts = dict(sections)["verdicts"]
    assert verdicts.count('<tr class="allowed">') >= 1 and verdicts.count('<tr class="refused">') >= 1
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "the page must not fetch anything"
    assert "<script" not in page


@pytest.mark.slow  # a second run
def test_a_rerun_with_the_same_seed_replaces_the_demo_and_gives_the_same_report(
    demo_run: tuple[Path, Any], tmp_path: Path
) -> None:
    out = tmp_path / "again"
    shutil.copytree(demo_run[0], out)  # a previous demo's folder: replaced, not refused
    result = runner.invoke(app, ["demo", *SMALL, "--out", str(out)])
    assert result.exit_code == 0, result.output
    timing = ("wall_seconds", "cpu_seconds", "load_average", "stage_seconds")
    first, second = _report(demo_run[0]), _report(out)
    for report in (first, second):
        for key in timing:
            report.pop(key)
    assert second == first


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--days", "13"], "--days"),
        (["--days", "121"], "--days"),
        (["--seed", "-1"], "--seed"),
        (["--decisions-per-day", "0"], "--decisions-per-day"),
    ],
)
def test_bad_options_exit_64(arguments: list[str], message: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", *arguments, "--out", str(tmp_path / "out")])
    assert result.exit_code == EXIT_USAGE, result.output
    assert message in result.output
    assert not (tmp_path / "out").exists()


def test_a_folder_holding_other_files_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "ledger.db").write_text("someone's ledger")  # a demo's file name, but no demo wrote it
    result = runner.invoke(app, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == EXIT_USAGE
    assert "not a demo's folder (no .banditgate-demo)" in result.output
    assert (tmp_path / "ledger.db").read_text() == "someone's ledger"
    (tmp_path / ".banditgate-demo").write_text("")
    (tmp_path / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == EXIT_USAGE
    assert "not a demo's (notes.txt)" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [".banditgate-demo", "ledger.db", "notes.txt"]
    (tmp_path / "file").write_text("")
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "file")])
    assert result.exit_code == EXIT_USAGE


def test_the_page_renders_every_section_in_headless_chromium(demo_run: tuple[Path, Any], tmp_path: Path) -> None:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("needs Debian's chromium and chromedriver (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the test extra)")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,4000"):
        options.add_argument(argument)
    browser = webdriver.Chrome(options=options, service=Service(driver))
    try:
        browser.get((demo_run[0] / "report.html").resolve().as_uri())
        for name, title in SECTIONS.items():
            section = browser.find_element(By.ID, name)
            assert section.is_displayed() and section.find_element(By.TAG_NAME, "h2").text == title
            if name != "verdicts":
                chart = section.find_element(By.TAG_NAME, "svg")
                assert chart.size["width"] > 300 and chart.size["height"] > 150, (name, chart.size)
        rows = browser.find_elements(By.CSS_SELECTOR, "#verdicts tbody tr")
        assert len(rows) == len(_report(demo_run[0])["promotions"])
        assert browser.save_screenshot(str(tmp_path / "report.png"))
    finally:
        browser.quit()
