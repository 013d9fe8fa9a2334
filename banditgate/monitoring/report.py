"""The HTML report of one gate evaluation: what the gate decided, why, and how the evidence got there.

:func:`write_gate_report` writes a standalone page (plots embedded as PNG, no external script or style: it
opens without a network) with

- the headline: the level, ``S = A * sum_i w_i x_i``, the gate factor ``A``, the label-free ``S_proxy``, the
  summary, the alerts this evaluation raised and the limits of what it can see (concept drift);
- the four dimensions with their intervals and notes, what would make the evidence sufficient, and when the
  labels still arriving should make it so;
- plots: S and the dimensions over the generation's evaluations (:func:`score_history`), each proxy's
  ``P_j = max(0, 1 - stat_j / cap_j)`` coloured by status, the label-arrival curve ``1 - S(t)`` (expected
  completeness of a decision of age ``t``, Kaplan-Meier, with its interval) and the what-if projection of a
  blind period (:func:`~banditgate.monitoring.blind_period.projection_figure`);
- the weakest counted segments (:func:`segment_summary`), and evidently's drift report, written next to the
  page as ``<stem>.drift.html`` (:func:`drift_report_path`) and linked from it. Evidently's page does not know
  what its two data sets are, so :func:`drift_page_html` heads it with the policy, the generation and the two
  windows it compares (:func:`drift_caption`).

Everything on the page but the drift report comes from the JSON reports, so a stored evaluation renders the
same page later.

Reference: "Evidence sufficiency under delayed ground truth", arXiv 2604.15740 (sufficiency score, proxy
indicators); Kaplan & Meier, JASA 53(282), 1958 (the arrival curve).

Examples
--------
>>> from banditgate.monitoring.gate import GateResult
>>> def report(day, s):
...     return {"as_of": f"2026-01-{day:02d}T00:00:00+00:00", "S": s, "S_proxy": None,
...             "dimensions": {d: {"value": s} for d in DIMENSIONS}}
>>> series = score_history(GateResult(report(2, 0.7), history=[report(3, 0.9), report(1, 0.8)]))
>>> [t.day for t in series.as_of], series.score, series.current
([1, 2, 3], (0.8, 0.7, 0.9), 1)
>>> number(None), number(0.93821), number(3585), number(float("nan"))
('-', '0.938', '3,585', '-')
"""

from __future__ import annotations

import base64
import io
import math
import os
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader
from markupsafe import escape
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from banditgate.monitoring.blind_period import LEVEL_COLOURS, DayProjection, projection_figure, shade_levels
from banditgate.monitoring.gate import GateResult
from banditgate.monitoring.sufficiency import DIMENSIONS, Level, SufficiencyParameters

#: Colour of each level (bands, badges) and of each proxy status (bars).
STATUS_COLOURS = {"ok": "#2ca02c", "alert": "#d62728"}
#: Days of the what-if projection listed in its table.
MILESTONE_DAYS = frozenset({0, 7, 14, 30, 60, 90})
#: Half the time axis of the history plot when every evaluation looked at the same time.
HISTORY_PADDING = timedelta(days=1)
#: Counted segments listed, worst first.
TOP_SEGMENTS = 20
#: Ratio of the longest to the shortest arrival time from which the arrival curve gets a log axis:
#: authorisation results arrive in seconds, chargebacks in months.
LOG_SPAN = 100.0
#: Ticks of a logarithmic age axis (days, label): at least two in any span of :data:`LOG_SPAN`.
_LOG_TICKS = (
    (0.1 / 86_400, "0.1 s"), (1 / 86_400, "1 s"), (10 / 86_400, "10 s"), (1 / 1440, "1 min"), (10 / 1440, "10 min"),
    (1 / 24, "1 h"), (6 / 24, "6 h"), (1.0, "1 day"), (30.0, "30 days"), (365.0, "1 year"),
)  # fmt: skip
#: Units of the arrival curve's age axis, largest first, in days.
_AGE_UNITS = (("days", 1.0), ("hours", 1.0 / 24.0), ("minutes", 1.0 / 1440.0), ("seconds", 1.0 / 86_400.0))
#: What the page says when the evaluation has a drift report but the page was rendered without a link to it.
_DRIFT_NOT_ATTACHED = "the drift tests ran, but their report is not attached to this page"
#: Vertical range of the history plot: a little beyond [0, 1] so that points at 0 or 1 are not cut in half.
_UNIT_RANGE = (-0.03, 1.03)
#: Detail entries left out of a dimension's note: they describe the method, not this window.
_QUIET_DETAIL = frozenset({"method", "confidence", "seed", "n_boot", "interval", "as_of"})


@dataclass(frozen=True)
class ScoreHistory:
    """S, S_proxy and the four dimensions of a generation's evaluations, in order of ``as_of``.

    ``current`` is the position of the evaluation being reported (the last one unless an earlier evaluation
    looked at a later time). ``proxy_score`` is NaN for an evaluation without it.
    """

    as_of: tuple[datetime, ...]
    score: tuple[float, ...]
    proxy_score: tuple[float, ...]
    dimensions: Mapping[str, tuple[float, ...]]
    current: int


def score_history(result: GateResult) -> ScoreHistory:
    """The series the history plot draws: ``result.history`` and ``result.report``, sorted by ``as_of``."""
    reports = [*result.history, result.report]
    times = [_instant(r["as_of"]) for r in reports]
    order = sorted(range(len(reports)), key=times.__getitem__)  # stable: the current one stays after its ties

    def column(values: Sequence[float | None]) -> tuple[float, ...]:
        return tuple(math.nan if values[i] is None else float(values[i]) for i in order)

    return ScoreHistory(
        as_of=tuple(times[i] for i in order),
        score=column([r["S"] for r in reports]),
        proxy_score=column([r.get("S_proxy") for r in reports]),
        dimensions={d: column([r["dimensions"][d]["value"] for r in reports]) for d in DIMENSIONS},
        current=order.index(len(reports) - 1),
    )


@dataclass(frozen=True)
class SegmentSummary:
    """The segments table: the weakest counted segments, and those too small to count.

    ``worst`` holds at most ``top`` counted segments, lowest S first; ``not_counted`` every other segment,
    largest first.
    """

    worst: tuple[Mapping[str, Any], ...]
    counted: int
    not_counted: tuple[Mapping[str, Any], ...]

    @property
    def not_counted_decisions(self) -> int:
        return sum(s["decisions"] for s in self.not_counted)


def segment_summary(segments: Sequence[Mapping[str, Any]], top: int = TOP_SEGMENTS) -> SegmentSummary:
    """Sort the report's ``segments``: counted ones by S (worst first, at most ``top``), the others by size.

    >>> rows = [{"segment": {"c": c}, "decisions": n, "counted": s is not None, "S": s}
    ...         for c, n, s in [("DE", 900, 0.9), ("FR", 500, 0.4), ("IT", 50, None), ("ES", 300, 0.6)]]
    >>> summary = segment_summary(rows, top=2)
    >>> [s["segment"]["c"] for s in summary.worst], summary.counted, summary.not_counted_decisions
    (['FR', 'ES'], 3, 50)
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be a positive integer, got {top!r}")
    counted = sorted((s for s in segments if s["counted"]), key=lambda s: s["S"])
    others = sorted((s for s in segments if not s["counted"]), key=lambda s: -s["decisions"])
    return SegmentSummary(tuple(counted[:top]), len(counted), tuple(others))


def drift_report_path(path: str | os.PathLike[str]) -> Path:
    """Where :func:`write_gate_report` puts the drift report of the page at ``path``.

    >>> drift_report_path("reports/gate-7.html").as_posix()
    'reports/gate-7.drift.html'
    """
    page = Path(path)
    return page.with_name(f"{page.stem}.drift.html")


def write_gate_report(result: GateResult, path: str | os.PathLike[str]) -> None:
    """Write the page to ``path`` and evidently's drift report next to it (:func:`drift_report_path`)."""
    page = Path(path)
    if page.is_dir():
        raise ValueError(f"{page} is a directory: give the path of the HTML file to write")
    page.parent.mkdir(parents=True, exist_ok=True)
    drift_path = drift_report_path(page)
    link = None
    drift = result.feature_drift
    if drift is not None and drift.snapshot is not None:
        drift_path.write_text(drift_page_html(result), encoding="utf-8")
        link = urllib.parse.quote(drift_path.name)
    else:
        # A drift report left by an earlier evaluation would sit next to a page that does not describe it.
        drift_path.unlink(missing_ok=True)
    page.write_text(render_gate_html(result, drift_link=link), encoding="utf-8")


def drift_caption(report: Mapping[str, Any]) -> str:
    """What the drift tests of the evaluation ``report`` compare, in one sentence.

    >>> window = {"decisions": 1200, "sampled": 1000}
    >>> print(drift_caption({"policy": "default", "generation": 3, "as_of": "2026-02-01T00:00:00+00:00",
    ...     "windows": {"reference": {**window, "start": "2026-01-01T00:00:00", "end": "2026-01-15T00:00:00"},
    ...                 "current": {**window, "start": "2026-01-02T00:00:00", "end": "2026-02-01T00:00:00"}}}))
    Feature drift of policy default, generation 3, evaluated as of 2026-02-01 00:00:00 UTC: the decision contexts \
of the current window, 2026-01-02 00:00:00 UTC to 2026-02-01 00:00:00 UTC (1,200 decisions, 1,000 sampled), \
against the reference window, the generation's training window, 2026-01-01 00:00:00 UTC to 2026-01-15 00:00:00 \
UTC (1,200 decisions, 1,000 sampled).
    """
    windows = report["windows"]

    def window(name: str) -> str:
        w = windows[name]
        return (
            f"{when(w['start'])} to {when(w['end'])} ({number(w['decisions'])} decisions, "
            f"{number(w['sampled'])} sampled)"
        )

    # Generation 0 has no training window: its reference is the window of the same length before the current one.
    reference = "the generation's training window" if report["generation"] else "the window before the current one"
    return (
        f"Feature drift of policy {report['policy']}, generation {report['generation']}, evaluated as of "
        f"{when(report['as_of'])}: the decision contexts of the current window, {window('current')}, against the "
        f"reference window, {reference}, {window('reference')}."
    )


def drift_page_html(result: GateResult) -> str:
    """Evidently's drift report of ``result``, titled and headed by :func:`drift_caption`.

    Evidently's page names its data sets only "current" and "reference": on its own it does not say which
    generation it judged, nor which decisions it compared.
    """
    if result.feature_drift is None:
        raise ValueError("this evaluation carries no drift tests")
    report = result.report
    caption = escape(drift_caption(report))
    title = escape(f"Feature drift: policy {report['policy']}, generation {report['generation']}")
    header = (
        '<header style="font-family: sans-serif; margin: 1em; padding: 0.5em 1em; border-left: 4px solid #1f77b4;">'
        f'<h1 style="font-size: 1.3em;">{title}</h1><p>{caption}</p>'
        "<p>Below, evidently's report: &quot;reference&quot; is the reference window's sample, &quot;current&quot; "
        "the current window's.</p></header>"
    )
    html = result.feature_drift.html()
    html, titled = re.subn(r"<head>", lambda m: f"{m.group(0)}<title>{title}</title>", html, count=1)
    html, headed = re.subn(r"<body[^>]*>", lambda m: m.group(0) + header, html, count=1)
    if not (titled and headed):
        raise ValueError("evidently's drift report has no <head> or <body> to put its caption in")
    return html


def render_gate_html(result: GateResult, drift_link: str | None = None) -> str:
    """The page, standalone; ``drift_link`` is the address (relative to the page) of the attached drift report.

    Without ``drift_link`` the page says why there is no drift report to see.
    """
    report = result.report
    params = SufficiencyParameters.from_dict(report["options"]["parameters"])
    latency = report["label_latency"]
    arrival = arrival_figure(
        latency["curve"], target=latency.get("target_completeness"), reward_kind=report["options"]["reward_kind"]
    )
    proxies = proxies_figure(report["proxies"])
    plots = {
        "history": _png(history_figure(score_history(result), params)),
        "proxies": None if proxies is None else _png(proxies),
        "arrival": None if arrival is None else _png(arrival),
        "what_if": _png(what_if_figure(report["what_if"], params)) if "what_if" in report else None,
    }
    environment = Environment(
        loader=PackageLoader("banditgate.monitoring"), autoescape=True, trim_blocks=True, lstrip_blocks=True
    )
    environment.filters.update(number=number, statistic=statistic, when=when)
    return environment.get_template("gate.html.j2").render(
        report=report,
        params=params,
        plots=plots,
        evaluations=len(result.history) + 1,
        dimensions=_dimension_rows(report),
        proxies=[{**p, "note": _note(p["detail"])} for p in report["proxies"]],
        segments=segment_summary(report["segments"]),
        milestones=[d for d in report.get("what_if", {}).get("days", []) if d["day"] in MILESTONE_DAYS],
        drift_link=drift_link,
        drift_caption=drift_caption(report),
        drift_missing=None if drift_link is not None else _drift_missing(result) or _DRIFT_NOT_ATTACHED,
        level_colours=LEVEL_COLOURS,
    )


def history_figure(series: ScoreHistory, params: SufficiencyParameters) -> Figure:
    """S and S_proxy over the evaluations with the level bands shaded; below, the four dimensions."""
    # Figure objects, not pyplot: no global state and no display backend, safe in a server or a job.
    figure = Figure(figsize=(10, 6), layout="constrained")
    score_axis, dimension_axis = figure.subplots(2, 1, sharex=True, height_ratios=(1.4, 1.0))
    shade_levels(score_axis, params)
    # Markers on every line: with a single evaluation there is no line to see, only its point.
    score_axis.plot(series.as_of, series.score, marker="o", linewidth=2, color="black", label="S")
    if not all(math.isnan(s) for s in series.proxy_score):
        score_axis.plot(series.as_of, series.proxy_score, marker="s", linestyle="--", color="#1f77b4", label="S_proxy")
    score_axis.plot(
        [series.as_of[series.current]], [series.score[series.current]], marker="o", markersize=14,
        markerfacecolor="none", markeredgecolor="black", linestyle="none", label="this evaluation",
    )  # fmt: skip
    score_axis.set(ylim=_UNIT_RANGE, ylabel="S", title="Evidence sufficiency of this generation over its evaluations")
    score_axis.legend(loc="lower left", fontsize="small", ncols=3)
    for dimension in DIMENSIONS:
        dimension_axis.plot(series.as_of, series.dimensions[dimension], marker="o", label=dimension)
    dimension_axis.set(ylim=_UNIT_RANGE, ylabel="dimension", xlabel="as of (UTC)")
    dimension_axis.legend(loc="lower left", fontsize="small", ncols=4)
    if series.as_of[0] == series.as_of[-1]:
        # A single time would get a range of years around it, the point lost in the middle.
        dimension_axis.set_xlim(series.as_of[0] - HISTORY_PADDING, series.as_of[0] + HISTORY_PADDING)
    locator = AutoDateLocator()
    dimension_axis.xaxis.set_major_locator(locator)
    dimension_axis.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    return figure


def proxies_figure(proxies: Sequence[Mapping[str, Any]]) -> Figure | None:
    """Each available proxy's ``P_j`` as a bar coloured by status, with ``P`` at its trigger marked.

    Unavailable proxies have no ``P_j`` and are not drawn (the page lists them); None when none is available.
    """
    drawn = [p for p in proxies if p["normalised"] is not None]
    if not drawn:
        return None
    figure = Figure(figsize=(9, 0.9 + 0.32 * len(drawn)), layout="constrained")
    axis = figure.subplots()
    rows = np.arange(len(drawn))
    axis.barh(rows, [p["normalised"] for p in drawn], color=[STATUS_COLOURS[p["status"]] for p in drawn])
    triggers = [max(0.0, 1.0 - p["trigger"] / p["cap"]) for p in drawn]
    axis.plot(triggers, rows, linestyle="none", marker="|", markersize=14, color="black", label="P at the trigger")
    axis.set_yticks(rows, [f"{p['name']} ({p['category']})" for p in drawn])
    axis.invert_yaxis()  # the report's order, top to bottom
    axis.set(xlim=(0.0, 1.0), xlabel="P = max(0, 1 - statistic / cap): 1 is no sign of trouble")
    handles = [Patch(color=colour, label=status) for status, colour in STATUS_COLOURS.items()]
    figure.legend(handles=[*handles, *axis.get_lines()], loc="outside lower center", ncols=3, fontsize="small")
    return figure


def arrival_figure(
    curve: Mapping[str, Any], *, target: float | None = None, reward_kind: str | None = None
) -> Figure | None:
    """Expected completeness ``1 - S(t)`` against the age ``t`` of a decision, with its interval.

    ``curve`` is :meth:`~banditgate.monitoring.label_latency.SurvivalCurve.to_dict`'s output. The age axis is
    in the largest unit the follow-up spans twice, and logarithmic when the arrival times span
    :data:`LOG_SPAN` or more; ``target`` (completeness needed) is drawn as a line. None without any arrival.
    """
    points = curve["points"]
    times = np.asarray(points["times"], dtype=np.float64)
    if times.size == 0:
        return None
    completeness = 1.0 - np.asarray(points["survival"], dtype=np.float64)
    # 1 - S turns S's upper bound into completeness's lower bound.
    low, high = 1.0 - np.asarray(points["upper"]), 1.0 - np.asarray(points["lower"])
    end = max(float(curve["follow_up_days"]), float(times[-1]))
    unit, days_per_unit = next((u for u in _AGE_UNITS if end >= 2 * u[1]), _AGE_UNITS[-1])
    positive = times[times > 0]
    log = positive.size > 0 and positive[-1] / positive[0] >= LOG_SPAN
    # The curve is 0 before the first arrival; on a log axis "before" starts just left of it.
    start = positive[0] / 2 if log else 0.0
    x = np.concatenate(([start], np.maximum(times, start), [end])) / days_per_unit

    def steps(values: np.ndarray) -> np.ndarray:
        return np.concatenate(([0.0], values, [values[-1]]))

    figure = Figure(figsize=(9, 4), layout="constrained")
    axis = figure.subplots()
    axis.fill_between(x, steps(low), steps(high), step="post", alpha=0.25, label=f"{curve['confidence']:.0%} interval")
    axis.step(x, steps(completeness), where="post", linewidth=2, label="expected completeness 1 - S(age)")
    if target is not None:
        axis.axhline(target, color="grey", linestyle="--", label=f"completeness needed ({target:.3f})")
    if log:
        axis.set_xscale("log")
        # Days to the power -6 say nothing to a reader; seconds, hours and months do.
        shown = [(d / days_per_unit, label) for d, label in _LOG_TICKS if x[0] <= d / days_per_unit <= x[-1]]
        axis.set_xticks([t for t, _ in shown], [label for _, label in shown])
        axis.minorticks_off()
    kind = f" ({reward_kind})" if reward_kind else ""
    axis.set(
        ylim=(0.0, 1.05),
        xlabel="age of the decision (log scale)" if log else f"age of the decision ({unit})",
        ylabel="share with its label",
        title=f"Label arrival{kind}: {curve['n']:,} decisions, {curve['censored']:,} still without a label",
    )
    axis.legend(loc="lower right", fontsize="small")
    return figure


def what_if_figure(what_if: Mapping[str, Any], params: SufficiencyParameters) -> Figure:
    """The report's what-if projection, drawn as the blind-period simulator draws it."""
    days = [
        DayProjection(
            d["day"], d["S"], d["A"], d["completeness"], d["freshness"], d["reliability"], d["representativeness"],
            Level(d["level"]),
        )
        for d in what_if["days"]
    ]  # fmt: skip
    return projection_figure({f"what if: {what_if['scenario']}": days}, params)


def number(value: Any, digits: int = 3) -> str:
    """A number for the page: ``digits`` decimals, thousands separators for integers, ``-`` for none."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{float(value):.{digits}f}"


def statistic(value: Any) -> str:
    """A raw statistic, whose scale varies from proxy to proxy: four significant digits, ``-`` for none.

    >>> statistic(0.000512345), statistic(12.5), statistic(None)
    ('0.0005123', '12.5', '-')
    """
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{float(value):.4g}"


def when(value: str | None) -> str:
    """An ISO 8601 time as ``YYYY-MM-DD HH:MM:SS UTC``.

    >>> when("2026-01-17T01:30:00+01:00"), when(None)
    ('2026-01-17 00:30:00 UTC', '-')
    """
    return "-" if value is None else _instant(value).strftime("%Y-%m-%d %H:%M:%S UTC")


def _instant(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    # The ledger keeps UTC; a time without an offset is one of its.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _drift_missing(result: GateResult) -> str | None:
    """Why the evaluation has no drift report to attach, None when it has one."""
    drift = result.feature_drift
    if drift is None:
        return "this evaluation carries no drift tests (a stored report rendered again, or one made without them)"
    if drift.snapshot is None:
        return str(drift.readings[0].detail.get("reason", "the drift tests did not run"))
    return None


def _dimension_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name in DIMENSIONS:
        measured = report["dimensions"][name]
        low, high = measured["interval"]
        rows.append(
            {
                "name": name,
                "value": measured["value"],
                "low": low,
                "high": high,
                "n": measured["n"],
                "contribution": report["contributions"][name],
                "proxy": report["proxy_dimensions"][name],
                "method": measured["detail"].get("method"),
                "note": _note(measured["detail"]),
            }
        )
    return rows


def _note(detail: Mapping[str, Any]) -> str:
    """Why a value is undefined, or its scalar specifics (nested ones stay in the JSON report)."""
    if "reason" in detail:
        return str(detail["reason"])
    items = []
    for key, value in detail.items():
        if key in _QUIET_DETAIL or not isinstance(value, str | int | float):
            continue
        items.append(f"{key} {statistic(value) if isinstance(value, float) else value}")
    return "; ".join(items)
