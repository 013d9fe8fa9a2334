"""``report.html`` and ``report.json`` of ``banditgate demo``: charts drawn with matplotlib, inlined as SVG.

The HTML page is self-contained (no script, no stylesheet or font fetched), so it opens offline and can be
archived. Its sections, each an ``<section id=...>``: ``reward`` (true expected authorisation per day and per
generation against the best action and uniform random), ``exploration`` (each candidate's off-greedy share and
effective sample size), ``ope`` (off-policy estimates of each candidate against its true value), ``sufficiency``
(S and its four dimensions over time, on authorisation labels and on chargebacks, whose delay makes the blind
period), ``verdicts`` (every gate verdict and promotion).
"""

from __future__ import annotations

import html
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from banditgate.service.demo import DemoReport

#: The sections of the page, in order: id and title.
SECTIONS = {
    "reward": "Reward per day and per generation",
    "exploration": "Exploration share and effective sample size",
    "ope": "Off-policy estimates against the true value",
    "sufficiency": "Evidence sufficiency over time",
    "verdicts": "Gate verdicts and promotions",
}
DIMENSIONS = ("completeness", "freshness", "reliability", "representativeness")
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2em; } section { margin-top: 2.5em; } .note { color: #555; max-width: 60em; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { padding: 0.2em 0.6em; border-bottom: 1px solid #ddd; }
th { text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.allowed td { background: #e8f5e9; } tr.refused td { background: #fff3e0; } svg { max-width: 100%; height: auto; }
"""


def write_reports(report: DemoReport, folder: Path) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.json`` into ``folder``; return their paths."""
    json_path = folder / "report.json"
    json_path.write_text(json.dumps(report.to_dict(), indent=1, allow_nan=False))
    html_path = folder / "report.html"
    html_path.write_text(render_html(report))
    return html_path, json_path


def render_html(report: DemoReport) -> str:
    """The whole page."""
    import matplotlib

    matplotlib.use("Agg")  # no display; safe to call again
    import matplotlib.pyplot as plt

    with plt.rc_context({"svg.hashsalt": "banditgate-demo", "font.size": 9, "figure.dpi": 96}):
        bodies = {
            "reward": _reward_section(report),
            "exploration": _exploration_section(report),
            "ope": _ope_section(report),
            "sufficiency": _sufficiency_section(report),
            "verdicts": _verdicts_section(report),
        }
    sections = "\n".join(
        f'<section id="{key}"><h2>{html.escape(SECTIONS[key])}</h2>\n{body}</section>' for key, body in bodies.items()
    )
    promoted = sum(p.allowed for p in report.promotions)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>banditgate demo</title><style>{_STYLE}</style></head>
<body>
<h1>banditgate demo</h1>
<p class="note">{report.days} simulated days from {report.start[:10]}, about {report.decisions_per_day:,} payments a
day (seed {report.seed}), served through the service's HTTP API on a simulated clock: {report.decisions:,} decisions,
{", ".join(f"{v:,} {k} rewards" for k, v in report.rewards_posted.items())} posted. Every day the candidate trained the
day before was judged by the sufficiency gate and promoted when SUFFICIENT ({promoted} of {len(report.promotions)}),
and a new candidate was trained. A {html.escape(report.scenario)} drift (issuers change behaviour; the features do not
move) starts on day {report.drift_onset_day:g} and reaches full strength {report.drift_ramp_days:g} days later.
Run time {report.wall_seconds:.0f} s wall, {report.cpu_seconds:.0f} s CPU.</p>
{sections}
</body></html>
"""


# -- sections ---------------------------------------------------------------------------------------------


def _reward_section(report: DemoReport) -> str:
    import matplotlib.pyplot as plt

    fig, (by_day, by_generation) = plt.subplots(2, 1, figsize=(10, 6.5), constrained_layout=True)
    days = [d.day + 1 for d in report.per_day]
    for name, values, style in (
        ("best action", [d.best_reward for d in report.per_day], {"color": "#2e7d32", "ls": "--"}),
        ("served (logged probabilities)", [d.expected_reward for d in report.per_day], {"color": "#1565c0", "lw": 2}),
        ("uniform random", [d.uniform_reward for d in report.per_day], {"color": "#9e9e9e", "ls": ":"}),
    ):
        by_day.plot(days, _nan(values), label=name, **style)
    for p in report.promotions:
        if p.allowed:
            by_day.axvline(p.day + 1.0, color="#1565c0", alpha=0.15, lw=1)
    _drift_span(by_day, report)
    by_day.set(xlabel="simulated day", ylabel="true expected authorisation", title="per day (thin lines: promotions)")
    by_day.legend(loc="lower left")
    served = [g for g in report.generations if g.decisions_served]
    xs = list(range(len(served)))
    by_generation.plot(xs, _nan([g.served_best for g in served]), "v", color="#2e7d32", label="best action")
    by_generation.plot(xs, _nan([g.served_reward for g in served]), "o", color="#1565c0", label="generation as served")
    by_generation.plot(xs, _nan([g.served_uniform for g in served]), "^", color="#9e9e9e", label="uniform random")
    by_generation.set_xticks(xs, [str(g.number) for g in served])
    by_generation.set(
        xlabel="generation (in the order they served)", ylabel="true expected authorisation", title="per generation"
    )
    by_generation.legend(loc="lower left")
    rows = [
        [
            str(g.number),
            f"{g.decisions_served:,}",
            _fmt(g.served_reward),
            _fmt(g.served_best),
            _fmt(g.served_uniform),
            _fmt(None if g.served_reward is None or g.served_best is None else g.served_best - g.served_reward),
        ]
        for g in served
    ]
    note = (
        "The true expected authorisation rate of what was served, from the simulator's truth (no outcome noise): "
        "under the probabilities each decision logged, under the best eligible action and under a uniform choice, "
        "on the same transactions."
    )
    table = _table(["generation", "decisions", "served", "best", "uniform", "regret"], rows, numeric=range(1, 6))
    return f'<p class="note">{note}</p>{_svg(fig)}{table}'


def _exploration_section(report: DemoReport) -> str:
    import matplotlib.pyplot as plt

    trained = [g for g in report.generations if g.trained_on_day is not None]
    fig, (share, ess) = plt.subplots(1, 2, figsize=(10, 3.2), constrained_layout=True)
    days = [g.trained_on_day + 1 for g in trained if g.trained_on_day is not None]
    share.plot(days, _nan([g.exploration_share for g in trained]), "o-", ms=3, color="#6a1b9a")
    share.set(xlabel="day trained", ylabel="off-greedy probability mass", title="exploration share of each candidate")
    share.set_ylim(bottom=0)
    ess.plot(days, _nan([g.ess for g in trained]), "o-", ms=3, color="#ef6c00")
    ess.set(xlabel="day trained", ylabel="ESS (held-out decisions)", title="effective sample size of its DR estimate")
    ess.set_ylim(bottom=0)
    for axes in (share, ess):
        _drift_span(axes, report)
    note = (
        "Exploration share: the mean probability a candidate puts on actions other than its greedy choice, at the "
        "SquareCB gamma retraining chose by off-policy evaluation. ESS: the effective sample size of the importance "
        "weights of its estimate on the held-out decisions (how many decisions the estimate is really worth)."
    )
    return f'<p class="note">{note}</p>{_svg(fig)}'


def _ope_section(report: DemoReport) -> str:
    import matplotlib.pyplot as plt

    judged = [g for g in report.generations if g.true_value is not None and "dr" in g.estimates]
    fig, axes = plt.subplots(figsize=(10, 3.8), constrained_layout=True)
    days = [g.trained_on_day + 1 for g in judged if g.trained_on_day is not None]
    dr = [g.estimates["dr"] for g in judged]
    axes.errorbar(
        days,
        [e.value for e in dr],
        yerr=[[e.value - e.ci_low for e in dr], [e.ci_high - e.value for e in dr]],
        fmt="o",
        ms=3,
        color="#1565c0",
        ecolor="#90caf9",
        label="DR (95% interval)",
    )
    for name, marker, color in (("snips", "x", "#6a1b9a"), ("dm", "+", "#ef6c00")):
        axes.plot(
            days,
            [g.estimates[name].value if name in g.estimates else float("nan") for g in judged],
            marker,
            color=color,
            label=name.upper(),
        )
    axes.plot(days, [g.true_value for g in judged], "s", mfc="none", color="#c62828", label="true value (next day)")
    _drift_span(axes, report)
    axes.set(xlabel="day trained", ylabel="expected authorisation", title="each candidate: estimated and true value")
    axes.legend(loc="lower left", ncol=5)
    covered = sum(g.estimates["dr"].ci_low <= g.true_value <= g.estimates["dr"].ci_high for g in judged)  # type: ignore[operator]
    note = (
        "Off-policy estimates of each candidate as served (its exploration included) on the held-out end of its "
        "training window, against its true expected authorisation on the transactions of the following day (the "
        "day the gate watched it), computed from the simulator's truth. "
        f"DR's interval holds the true value for {covered} of {len(judged)} candidates."
    )
    rows = [
        [
            str(g.number),
            str(g.trained_on_day + 1 if g.trained_on_day is not None else "-"),
            *(_estimate(g.estimates.get(name)) for name in ("dr", "snips", "ips", "dm")),
            _fmt(g.true_value),
        ]
        for g in judged
    ]
    table = _table(["generation", "day trained", "DR", "SNIPS", "IPS", "DM", "true"], rows, numeric=range(1, 7))
    return f'<p class="note">{note}</p>{_svg(fig)}<details><summary>every estimate</summary>{table}</details>'


def _sufficiency_section(report: DemoReport) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(10, 8.5), constrained_layout=True, sharex=True)
    kinds = {"authorisation": "candidates, authorisation labels", "chargeback": "deployed generation, chargebacks"}
    for kind, color, marker in (("authorisation", "#1565c0", "o"), ("chargeback", "#c62828", "s")):
        gates = [g for g in report.gates if g.reward_kind == kind]
        axes[0].plot(
            [g.day + 1 for g in gates], [g.S for g in gates], marker + "-", ms=3, color=color, label=kinds[kind]
        )
    refused = [p for p in report.promotions if not p.allowed]
    axes[0].plot([p.day + 1 for p in refused], [p.S for p in refused], "x", ms=6, color="#ef6c00", label="refused")
    axes[0].set(
        ylabel="S", title="sufficiency S (levels: SUFFICIENT above the upper line, INSUFFICIENT below the lower)"
    )
    for level in (report.sufficient, report.degraded):
        axes[0].axhline(level, color="#9e9e9e", lw=0.8, ls="--")
    axes[0].legend(loc="center left")
    for row, kind in ((1, "authorisation"), (2, "chargeback")):
        gates = [g for g in report.gates if g.reward_kind == kind]
        for dimension in DIMENSIONS:
            axes[row].plot(
                [g.day + 1 for g in gates],
                [g.dimensions.get(dimension, float("nan")) for g in gates],
                ".-",
                label=dimension,
            )
        axes[row].set(ylabel="dimension", title=f"the four dimensions: {kinds[kind]}", ylim=(-0.05, 1.05))
        axes[row].legend(loc="lower left", ncol=4)
    blind_end = 45.0
    axes[2].axvspan(0.5, min(blind_end, report.days + 0.5), color="#ffcdd2", alpha=0.35, lw=0)
    axes[2].text(1.0, 0.5, "no chargeback label can have arrived yet (45 days at least)", fontsize=8, color="#b71c1c")
    for axis in axes:
        _drift_span(axis, report)
    axes[2].set(xlabel="simulated day")
    note = (
        "Each day the gate judged the candidate trained the day before on the day of traffic after its training "
        "window (authorisation labels arrive in seconds); a candidate is refused (an orange cross) when its level "
        "is not SUFFICIENT, also when S is high but rests on fewer labelled decisions than the gate asks for "
        "(INSUFFICIENT). Every "
        f"{_chargeback_every(report)} days the deployed generation was also judged on chargebacks, over every "
        "decision since the start: they arrive 45 to 180 days after the payment, so completeness and freshness "
        "stay at zero through the blind period, and S with them, whatever the model is worth."
    )
    return f'<p class="note">{note}</p>{_svg(fig)}'


def _verdicts_section(report: DemoReport) -> str:
    rows = []
    classes = []
    for p in report.promotions:
        rows.append(
            [
                str(p.day + 1),
                p.date,
                str(p.generation),
                str(p.deployed_before),
                f"{p.S:.3f}",
                p.level,
                "promoted" if p.allowed else "refused",
                p.message,
            ]
        )
        classes.append("allowed" if p.allowed else "refused")
    note = (
        "Every gate verdict on a candidate and what became of it: promoted (the deployed generation retired) or "
        "refused (the candidate stays a candidate, superseded by the next day's)."
    )
    head = ["day", "date", "generation", "deployed before", "S", "level", "verdict", "gate's message"]
    return f'<p class="note">{note}</p>' + _table(head, rows, numeric={0, 2, 3, 4}, row_classes=classes)


# -- helpers ----------------------------------------------------------------------------------------------


def _chargeback_every(report: DemoReport) -> int:
    days = sorted({g.day for g in report.gates if g.reward_kind == "chargeback"})
    return days[1] - days[0] if len(days) > 1 else 0


def _drift_span(axes: Axes, report: DemoReport) -> None:
    onset = report.drift_onset_day + 1.0
    axes.axvspan(onset, onset + report.drift_ramp_days, color="#fff59d", alpha=0.35, lw=0)
    axes.axvline(onset, color="#f9a825", lw=1)


def _svg(fig: Figure) -> str:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _table(head: list[str], rows: list[list[str]], numeric: Any = (), row_classes: list[str] | None = None) -> str:
    numeric = set(numeric)
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = []
    for i, row in enumerate(rows):
        cells = "".join(
            f'<td class="num">{html.escape(c)}</td>' if j in numeric else f"<td>{html.escape(c)}</td>"
            for j, c in enumerate(row)
        )
        css = f' class="{row_classes[i]}"' if row_classes else ""
        body.append(f"<tr{css}>{cells}</tr>")
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _nan(values: list[float | None]) -> list[float]:
    return [float("nan") if v is None else v for v in values]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _estimate(estimate: Any) -> str:
    if estimate is None:
        return "-"
    return f"{estimate.value:.4f} [{estimate.ci_low:.4f}, {estimate.ci_high:.4f}]"
