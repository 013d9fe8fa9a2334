"""The HTML report of a gate evaluation, on a real evaluation of a small simulated ledger."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import warnings
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
import pytest
from markupsafe import escape
from matplotlib.colors import to_hex

from banditgate.ledger.db import make_engine, make_sessionmaker
from banditgate.monitoring.gate import CONCEPT_DRIFT_LIMIT, GateOptions, GateResult, evaluate_gate
from banditgate.monitoring.label_latency import kaplan_meier
from banditgate.monitoring.proxies.feature_drift import feature_drift_proxies
from banditgate.monitoring.report import (
    HISTORY_PADDING,
    STATUS_COLOURS,
    TOP_SEGMENTS,
    arrival_figure,
    drift_caption,
    drift_report_path,
    history_figure,
    proxies_figure,
    render_gate_html,
    score_history,
    segment_summary,
    when,
    write_gate_report,
)
from banditgate.monitoring.sufficiency import DIMENSIONS, SufficiencyParameters, preset
from banditgate.pipelines.retrain import RetrainOptions, retrain
from banditgate.simulator import PaymentWorld
from tests.support.ledger_fill import simulated_ledger

PNG = 'src="data:image/png;base64,'


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> GateResult:
    """Generation 1 retrained as of day 8 on 8 days of traffic, judged as of day 12, with a what-if."""
    directory = tmp_path_factory.mktemp("gate_report")
    world = PaymentWorld(scenario="none", seed=1)

    def retrain_day_8(sessions: Any) -> None:
        options = RetrainOptions(as_of=world.epoch + timedelta(days=8), window=timedelta(days=8))
        retrain(sessions, directory / "artifacts", "default", options)

    simulated_ledger(directory, world, days=12, per_day=300, seed=1, then=retrain_day_8)
    # Small segments count, so that the segments table has rows.
    options = GateOptions(sample_size=1500, scoring_size=300, parameters=preset("default").replace(min_segment_size=30))
    engine = make_engine(f"sqlite:///{directory / 'ledger.db'}")
    try:
        with warnings.catch_warnings(), make_sessionmaker(engine)() as session:
            warnings.simplefilter("ignore", FutureWarning)  # evidently's pandas deprecations, not ours
            return evaluate_gate(
                session,
                directory / "artifacts",
                "default",
                1,
                as_of=world.epoch + timedelta(days=12),
                options=options,
                what_if="concept",
            )
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def written(result: GateResult, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    page = tmp_path_factory.mktemp("written") / "reports" / "gate.html"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        write_gate_report(result, page)
    return page, page.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def page(result: GateResult) -> str:
    """The page without a drift link (rendering takes a second or two: done once)."""
    return render_gate_html(result)


@pytest.fixture(scope="module")
def lean(result: GateResult) -> GateResult:
    """The evaluation without its what-if, the slowest plot, for tests about the rest of the page."""
    return dataclasses.replace(result, report={k: v for k, v in result.report.items() if k != "what_if"})


def earlier(report: dict[str, Any], days: int, score: float) -> dict[str, Any]:
    """A copy of ``report`` evaluated ``days`` earlier, with S and every dimension at ``score``."""
    other = copy.deepcopy({k: (dict(v) if isinstance(v, MappingProxyType) else v) for k, v in report.items()})
    other["as_of"] = (datetime.fromisoformat(report["as_of"]) - timedelta(days=days)).isoformat()
    other["S"] = other["S_proxy"] = score
    for name in DIMENSIONS:
        other["dimensions"][name]["value"] = score
    return other


def test_page_has_the_headline_dimensions_and_every_proxy(written: tuple[Path, str], result: GateResult) -> None:
    _, page = written
    report = result.report
    assert f">{report['level']}</span>" in page
    assert f"S = <b>{report['S']:.3f}</b>" in page
    assert f"A = <b>{report['A']:.3f}</b>" in page
    assert f"S_proxy = <b>{report['S_proxy']:.3f}</b>" in page
    assert str(escape(report["summary"])) in page
    assert str(escape(CONCEPT_DRIFT_LIMIT)) in page
    for name, measured in report["dimensions"].items():
        low, high = measured["interval"]
        value = f"<td><b>{measured['value']:.3f}</b></td><td>[{low:.3f}, {high:.3f}]</td>"
        assert f'<td class="text">{name}</td>{value}' in page
    for requirement in report["requirements"]:
        assert str(escape(requirement["message"])) in page
    assert str(escape(report["label_latency"]["explanation"])) in page
    for proxy in report["proxies"]:
        assert f'<td class="text">{proxy["name"]}</td>' in page
    for alert in report["alerts"]:
        assert str(escape(alert["message"])) in page


def test_page_embeds_four_plots_and_needs_no_network(written: tuple[Path, str]) -> None:
    _, page = written
    assert page.count(PNG) == 4  # history, proxies, label arrival, what-if
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)


def test_drift_report_is_written_next_to_the_page_and_linked(written: tuple[Path, str]) -> None:
    path, page = written
    drift = path.with_name("gate.drift.html")
    assert drift_report_path(path) == drift
    assert drift.stat().st_size > 10_000
    assert "<html" in drift.read_text(encoding="utf-8")[:2000].lower()
    assert '<a href="gate.drift.html">' in page


def test_drift_report_says_which_generation_and_windows_it_compares(
    written: tuple[Path, str], result: GateResult
) -> None:
    path, page = written
    drift = path.with_name("gate.drift.html").read_text(encoding="utf-8")
    report = result.report
    current, reference = report["windows"]["current"], report["windows"]["reference"]
    # generation 1 was trained on days 0-8 and is judged as of day 12 on the 30-day window before it
    assert reference["start"] < reference["end"] <= report["trained_until"] < current["end"] == report["as_of"]
    head, body = drift.split("<body>", 1)
    assert "<title>Feature drift: policy default, generation 1</title>" in head
    caption = drift_caption(report)
    assert str(escape(caption)) in body[:3000]  # at the top of evidently's page
    for instant in (report["as_of"], current["start"], current["end"], reference["start"], reference["end"]):
        assert when(instant) in caption
    assert "policy default, generation 1," in caption
    assert "the generation's training window" in caption
    assert str(escape(caption)) in page  # and on the gate's page, next to the link


def test_without_what_if_three_plots(lean: GateResult) -> None:
    page = render_gate_html(lean)
    assert page.count(PNG) == 3
    assert "What if" not in page


def test_unavailable_proxies_are_listed_with_dashes_not_drawn(result: GateResult, page: str) -> None:
    missing = [p for p in result.report["proxies"] if p["status"] == "unavailable"]
    assert missing  # the small windows leave some proxies without enough rows
    for proxy in missing:
        row = f'<td class="text">{proxy["name"]}</td><td class="text">{proxy["category"]}</td><td>-</td>'
        assert row in page
        assert str(escape(f"{proxy['name']} ({proxy['category']}): {proxy['detail']['reason']}")) in page
    figure = proxies_figure(result.report["proxies"])
    assert figure is not None
    drawn = [p for p in result.report["proxies"] if p["status"] != "unavailable"]
    bars = figure.axes[0].patches
    assert len(bars) == len(drawn)
    for bar, proxy in zip(bars, drawn, strict=True):
        assert bar.get_width() == pytest.approx(proxy["normalised"])
        assert to_hex(bar.get_facecolor()) == STATUS_COLOURS[proxy["status"]]
    triggers = figure.axes[0].lines[0].get_xdata()
    assert triggers == pytest.approx([max(0.0, 1 - p["trigger"] / p["cap"]) for p in drawn])


def test_no_proxy_available_draws_no_bars() -> None:
    proxies = [{"name": "score_psi", "normalised": None, "status": "unavailable"}]
    assert proxies_figure(proxies) is None


def test_history_of_three_earlier_reports_draws_four_points(lean: GateResult) -> None:
    report = lean.report
    history = [earlier(report, 3, 0.9), earlier(report, 2, 0.6), earlier(report, 1, 0.3)]
    history[1]["S_proxy"] = None
    with_history = dataclasses.replace(lean, history=history)
    series = score_history(with_history)
    assert len(series.as_of) == 4
    assert list(series.as_of) == sorted(series.as_of)
    assert series.score[:3] == (0.9, 0.6, 0.3)
    assert series.score[3] == report["S"]
    assert np.isnan(series.proxy_score[1])
    assert series.dimensions["reliability"][:3] == (0.9, 0.6, 0.3)
    assert series.current == 3
    figure = history_figure(series, SufficiencyParameters.from_dict(report["options"]["parameters"]))
    score_line = figure.axes[0].lines[0]
    assert list(score_line.get_ydata()) == list(series.score)
    assert [len(line.get_xdata()) for line in figure.axes[1].lines] == [4, 4, 4, 4]
    assert "4 evaluations of this generation" in render_gate_html(with_history)


def test_history_sorted_by_as_of_marks_the_current_evaluation(result: GateResult) -> None:
    later = earlier(result.report, -2, 0.5)  # an earlier evaluation that looked at a later time
    series = score_history(dataclasses.replace(result, history=[later]))
    assert series.score == (result.report["S"], 0.5)
    assert series.current == 0


def test_single_evaluation_draws_its_point_in_a_two_day_range(result: GateResult) -> None:
    series = score_history(result)
    figure = history_figure(series, SufficiencyParameters())
    assert len(figure.axes[0].lines[0].get_xdata()) == 1
    low, high = figure.axes[1].get_xlim()
    assert high - low == pytest.approx(2 * HISTORY_PADDING / timedelta(days=1))


def test_arrival_curve_on_a_log_axis_when_times_span_orders_of_magnitude() -> None:
    # Authorisations after about a second, chargebacks after about a month; two decisions still waiting.
    days = [1 / 86_400, 2 / 86_400, 3 / 86_400, 20.0, 40.0, 60.0, 60.0]
    curve = kaplan_meier(days, [True, True, True, True, True, False, False])
    figure = arrival_figure(curve.to_dict(), target=0.8, reward_kind="chargeback")
    assert figure is not None
    axis = figure.axes[0]
    assert axis.get_xscale() == "log"
    labels = [t.get_text() for t in axis.get_xticklabels()]
    assert labels[0] == "1 s" and "1 day" in labels and "30 days" in labels
    steps = axis.lines[0]
    # 0 before the first arrival, then 1 - S after each, held to the end of the follow-up.
    assert steps.get_ydata() == pytest.approx([0.0, 1 / 7, 2 / 7, 3 / 7, 4 / 7, 5 / 7, 5 / 7])
    assert steps.get_xdata()[-1] == pytest.approx(60.0)
    assert axis.lines[1].get_ydata() == pytest.approx([0.8, 0.8])  # the completeness needed
    assert "chargeback" in axis.get_title() and "2 still without a label" in axis.get_title()


def test_arrival_curve_in_seconds_on_a_linear_axis_for_fast_labels() -> None:
    seconds = np.array([0.5, 1.0, 1.5, 2.0, 4.0])
    figure = arrival_figure(kaplan_meier(seconds / 86_400, [True] * 5).to_dict())
    assert figure is not None
    axis = figure.axes[0]
    assert axis.get_xscale() == "linear"
    assert axis.get_xlabel() == "age of the decision (seconds)"
    assert axis.lines[0].get_xdata() == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 4.0, 4.0])


def test_no_label_no_arrival_curve(lean: GateResult) -> None:
    assert arrival_figure(kaplan_meier([1.0, 2.0], [False, False]).to_dict()) is None
    report = dict(lean.report)
    report["label_latency"] = {**report["label_latency"], "curve": kaplan_meier([1.0], [False]).to_dict()}
    page = render_gate_html(dataclasses.replace(lean, report=report))
    assert "No label has arrived yet" in page
    assert page.count(PNG) == 2  # history and proxies


def test_segments_worst_first_and_the_uncounted_summarised(result: GateResult, page: str) -> None:
    segments = result.report["segments"]
    summary = segment_summary(segments)
    counted = [s for s in segments if s["counted"]]
    assert 0 < len(summary.worst) == min(TOP_SEGMENTS, len(counted))
    assert summary.counted == len(counted)
    scores = [s["S"] for s in summary.worst]
    assert scores == sorted(scores) and scores[0] == min(s["S"] for s in counted)
    assert summary.not_counted_decisions == sum(s["decisions"] for s in segments if not s["counted"])
    assert [s["decisions"] for s in summary.not_counted] == sorted(
        (s["decisions"] for s in summary.not_counted), reverse=True
    )
    worst = ", ".join(f"{k}={v}" for k, v in summary.worst[0]["segment"].items())
    assert f'<td class="text">{escape(worst)}</td>' in page
    assert f"{len(summary.not_counted):,} segments not counted ({summary.not_counted_decisions:,} decisions" in page
    with pytest.raises(ValueError, match="top must be a positive integer"):
        segment_summary(segments, top=0)


def test_unlinked_drift_report_said(page: str) -> None:
    assert "No drift report: the drift tests ran, but their report is not attached to this page." in page


def test_no_drift_report_said_and_a_stale_one_removed(lean: GateResult, tmp_path: Path) -> None:
    page = tmp_path / "gate.html"
    stale = tmp_path / "gate.drift.html"
    stale.write_text("an earlier evaluation's drift report", encoding="utf-8")
    write_gate_report(dataclasses.replace(lean, feature_drift=None), page)
    html = page.read_text(encoding="utf-8")
    assert not stale.exists()
    assert "drift.html" not in html
    assert "No drift report: this evaluation carries no drift tests" in html


def test_drift_tests_that_did_not_run_say_why(lean: GateResult) -> None:
    few = pd.DataFrame({"amount": np.arange(10.0)})
    drift = feature_drift_proxies(few, few)
    assert drift.snapshot is None
    html = render_gate_html(dataclasses.replace(lean, feature_drift=drift))
    assert f"No drift report: {escape(drift.readings[0].detail['reason'])}." in html


def test_everything_is_escaped(lean: GateResult) -> None:
    report = dict(lean.report)
    report["policy"] = "<script>alert('x')</script>"
    report["limits"] = ["labels <b>late</b> & few"]
    html = render_gate_html(dataclasses.replace(lean, report=report))
    assert "<script>" not in html and "<b>late</b>" not in html
    assert "&lt;script&gt;" in html and "labels &lt;b&gt;late&lt;/b&gt; &amp; few" in html


def test_a_stored_report_renders_the_same_figures(result: GateResult) -> None:
    stored = json.loads(json.dumps(result.report, default=dict))
    html = render_gate_html(GateResult(stored))
    assert html.count(PNG) == 4
    assert f"S = <b>{result.report['S']:.3f}</b>" in html


def test_write_refuses_a_directory(result: GateResult, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is a directory"):
        write_gate_report(result, tmp_path)
