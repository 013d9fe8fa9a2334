"""Proxy category 2, feature drift: decision contexts now against the reference, with evidently.

Four readings, larger is worse:

- ``drifted_columns_share``: the share of context columns evidently's ``DriftedColumnsCount`` flags as
  drifted, each tested by a ``ValueDrift`` on row samples of both windows (:data:`DEFAULT_SAMPLE` rows each, a
  fixed seed).
- ``missing_share``: the largest increase, over columns, of the share of missing values (a column absent from
  the current window is all missing): a broken feature pipeline.
- ``out_of_range_share``: the largest share, over numerical columns, of current values outside the
  reference's ``[min, max]``. The exact range rather than robust quantiles: values beyond the reference's
  extremes are ones the model never saw, and without drift their expected share is only ``2 / (n_ref + 1)``
  per column, so any material share is a signal (quantile bounds such as ``[q0.001, q0.999]`` would put a
  0.2% floor under every column instead).
- ``unseen_categories_share``: the largest share, over categorical columns, of current values never seen
  in the reference.

Shares are measured on the samples (standard error at most 0.0035 at 20,000 rows, far below the triggers);
the reference's range and categories come from every reference row, so "never seen" means never in the whole
reference window.

**Drift tests.** At tens of thousands of rows a p-value test rejects shifts far too small to matter (evidently
picks K-S / chi-square only for references of at most 1,000 rows, for that reason), so every column is judged
on an effect size, with the method set explicitly rather than left to evidently's size-dependent choice:

- numerical: evidently's ``wasserstein`` method, ``W1(ref, cur) / sd(ref)``;
- categorical (strings, booleans, pandas categoricals): ``jensenshannon``, the Jensen-Shannon distance
  ``sqrt(JSD)`` (natural logarithm) between the category frequencies.

A column drifts when its distance reaches its threshold, built from an effect-size floor of
:data:`DRIFT_THRESHOLD` (0.1, evidently's own default for both distances) and an upper bound on the distance's
quantile under no drift at the sample sizes used, so that sampling noise alone almost never flags a column.

**Alarm rule.** ``drifted_columns_share`` alerts when at least ``c(k) = max(1, ceil(0.1 k))`` of the ``k``
tested columns drift (a tenth of the features, 2 of the simulator's 20, moving at once; any one column when
there are fewer than ten; the reading's ``trigger`` is ``c(k) / k``). Each column is tested at the level
``a(k) = FALSE_ALARM_LEVEL c(k) / k`` (:data:`FALSE_ALARM_LEVEL` 1%), so by Markov's inequality
``P(count >= c) <= E[count] / c <= k a(k) / c(k) = 1%`` without drift, whatever the dependence between the
columns: for fewer than ten columns this is Bonferroni's ``a = 1% / k`` (0.11% for 9 columns), for 21 columns
``a = 0.14%``. The per-column bounds, at level ``a``:

- Jensen-Shannon: ``8 JSD ~ chi2(K - 1) (1/n + 1/m)`` under no drift (second-order expansion of the
  divergence), so the noise bound is ``N = chi2_{K-1}(1 - a) (1/n + 1/m) / 8`` in JSD. Under drift the
  sample JSD is about the population JSD plus that noise (the cross term has mean zero), so the floor applies
  to the population distance and the noise adds in quadrature: threshold ``sqrt(0.1^2 + N)``. It matters for
  high-cardinality columns (BINs, merchants): with 240 categories the no-drift distance is 0.055 at 20,000
  rows a side and 0.088 with 5,000 current rows, so a plain 0.1 would flag them on any ordinary day (e.g. a
  weekend's merchant mix); the threshold is then about 0.12 and 0.14, while it stays 0.10 for a dozen
  categories.
- Wasserstein: ``sqrt(nm / (n + m)) W1`` tends to ``Z = int |B(F(x))| dx`` (``B`` a Brownian bridge), a
  norm of a Gaussian process, for any ``F`` with ``J = int sqrt(F (1 - F)) dx`` finite, discrete and tied
  values included. Its mean is ``sqrt(2/pi) J``, and Gaussian concentration (Borell, Tsirelson-Ibragimov-
  Sudakov) bounds its upper quantile by ``median + z_{1-a} s <= sqrt(2/pi) J + z_{1-a} s`` with ``s`` the
  largest standard deviation of a linear functional ``int B(F(x)) h(x) dx``, ``|h| <= 1``; the bridge's
  covariance is non-negative, so that is ``h = 1``, the difference of means, ``s = sd``. The limit fails when a
  few extreme values carry the variance (heavy tails, a handful of ones in a rare binary column, a small window
  against a large one): one value ``v`` away from the rest that falls into the smaller window moves ``W1`` by
  ``v / min(n, m)``, more than the Gaussian term allows once the windows differ in size by more than ``z^2``.
  Bernstein's inequality adds a range term for that. With ``J``, ``sd`` and the range ``R = max |x - median|``
  measured on the pooled sample of both windows (the null distribution conditional on the values seen;
  measured on the reference alone they miss the extremes that fall into the current window), the bound on
  ``W1`` is

  ``(sqrt(2/pi) J + z_{1-a} sd) sqrt(1/n + 1/m) + ln(1/a) / 3 * R / min(n, m)``,

  and the threshold on evidently's ``W1 / sd(ref)`` is ``max(0.1, bound / sd(ref))``. For a normal column
  (``J = 1.61 sd``) and ``a = 0.1%`` it is about ``4.4 sd sqrt(1/n + 1/m)``: 0.20 at 1,000 rows a side,
  at the floor from about 4,000 rows a side. Without drift the bound held at every size and shape tried
  (normal, log-normal, Pareto down to index 1.1, Cauchy, zero-inflated, Poisson, binary down to 0.2% ones; 300
  to 10,000 rows a side, sizes up to 1:20 either way; at 1:20 the Gaussian term alone was exceeded in 0.5-1.9%
  of heavy-tailed pairs), and on random splits of the real Shuttle and RAND data (no column flagged in 1,200
  no-drift window pairs of 1,000 and 5,000 rows, where the earlier ``4 sqrt(2/pi) J(ref)`` bound flagged one
  in 2-52% of the pairs).

With those thresholds no-drift windows flag about no column, so ``drifted_columns_share`` stays near 0 and its
trigger is a real change of the features.

Calendar features (hour, weekday) drift by construction between a multi-day reference and a one-day window:
leave them out of the frames (or out of ``numerical`` / ``categorical``).

Reference: "Evidence sufficiency under delayed ground truth", arXiv 2604.15740 (proxy category 2); Evidently
0.7 documentation, "Data drift" (methods, thresholds); Lin, "Divergence measures based on the Shannon
entropy", IEEE Trans. Inf. Theory 37(1), 1991; del Barrio, Gine & Matran, "Central limit theorems for the
Wasserstein distance between the empirical and the true distributions", Ann. Probab. 27(2), 1999; Boucheron,
Lugosi & Massart, "Concentration Inequalities", Oxford University Press, 2013 (Gaussian concentration,
theorem 5.6; Bernstein's inequality, theorem 2.10).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from scipy.stats import chi2, norm

from banditgate.monitoring.proxies.base import ProxyReading, reading, unavailable

if TYPE_CHECKING:
    from evidently.core.report import Snapshot

CATEGORY = "feature_drift"

#: Rows sampled from each window for the drift tests.
DEFAULT_SAMPLE = 20_000
#: Rows each window needs: the no-drift noise bounds grow as ``1/sqrt(n)`` (for a normal column against 20,000
#: reference rows, at a 0.1% level: 0.15 at 1,000 current rows, 0.29 at 300), and past this only gross shifts
#: could be flagged.
MIN_ROWS = 1000

NUMERICAL_METHOD = "wasserstein"
CATEGORICAL_METHOD = "jensenshannon"
#: Effect-size floor of both distances (evidently's default threshold for ``wasserstein`` and ``jensenshannon``).
DRIFT_THRESHOLD = 0.1
#: Probability that ``drifted_columns_share`` alerts without drift (bound, any dependence between columns): each
#: column is tested at ``FALSE_ALARM_LEVEL * alarm_count(k) / k`` (:func:`column_alarm_level`).
FALSE_ALARM_LEVEL = 0.01

#: Share of drifted columns that alerts, at least one column: a tenth of the features (2 of the simulator's 20)
#: moving at once, while on no-drift days at most one column, a seasonal effect, is flagged; 0 at half the
#: columns, the share at which evidently's dataset-drift rule declares the whole dataset drifted.
DRIFTED_SHARE_TRIGGER = 0.10
DRIFTED_SHARE_CAP = 0.5
#: Missing share increase: alert when a column loses 5% of its values, 0 when it loses half.
MISSING_TRIGGER = 0.05
MISSING_CAP = 0.5
#: Out-of-range and unseen-category shares: alert at 2% of a column's values outside what the reference
#: covers (an order of magnitude above the no-drift floor), 0 at 20%.
UNSUPPORTED_TRIGGER = 0.02
UNSUPPORTED_CAP = 0.2

#: Unseen values listed per column in a reading's detail.
EXAMPLES = 5

Kind = Literal["numerical", "categorical"]

# Column drift says the inputs are not the reference's: representativeness. Reliability is left to the proxies
# that watch the model itself (uncertainty, disagreement): a drift the model is indifferent to says nothing
# about its quality, and covariate drift hits reliability only weakly (impact 0.2 vs 0.9 in the
# blind-period model, docs/methods.md).
DRIFT_COVERS = ("representativeness",)
# Missing, out-of-range and unseen values are inputs the reference does not cover (representativeness) and on
# which the model imputes or extrapolates (reliability).
QUALITY_COVERS = ("representativeness", "reliability")


@dataclass(frozen=True)
class ColumnDrift:
    """One column's drift test.

    Attributes
    ----------
    column, kind
        The column and how it was tested.
    method
        Evidently's drift method (``wasserstein`` or ``jensenshannon``).
    score
        The distance evidently measured.
    threshold
        The column's threshold: :data:`DRIFT_THRESHOLD`, or the no-drift bound at the column's level if larger
        (:func:`drift_threshold`).
    n_reference, n_current
        Non-missing sampled values on each side.
    """

    column: str
    kind: Kind
    method: str
    score: float
    threshold: float
    n_reference: int
    n_current: int

    @property
    def drifted(self) -> bool:
        """Whether the distance reaches the threshold (evidently's rule for distance methods)."""
        return self.score >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "kind": self.kind,
            "method": self.method,
            "score": self.score,
            "threshold": self.threshold,
            "drifted": self.drifted,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
        }


@dataclass(frozen=True)
class FeatureDrift:
    """The feature-drift readings, each column's test, and evidently's report of them.

    Attributes
    ----------
    readings
        ``drifted_columns_share``, ``missing_share``, ``out_of_range_share``, ``unseen_categories_share``.
    columns
        The drift test of every tested column.
    snapshot
        Evidently's ``Snapshot`` (None when the drift tests did not run).
    """

    readings: tuple[ProxyReading, ...]
    columns: tuple[ColumnDrift, ...] = ()
    snapshot: Snapshot | None = field(default=None, repr=False, compare=False)

    @property
    def scores(self) -> dict[str, float]:
        """Column -> drift distance."""
        return {c.column: c.score for c in self.columns}

    def html(self) -> str:
        """Evidently's standalone HTML report of the drift tests."""
        if self.snapshot is None:
            raise ValueError(f"no drift report: {self.readings[0].detail.get('reason', 'the tests did not run')}")
        return self.snapshot.get_html_str(as_iframe=False)

    def save_html(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`html` to ``path`` (evidently's own ``save_html`` silently ignores a ``Path``)."""
        with open(path, "w", encoding="utf-8") as out:
            out.write(self.html())

    def to_dict(self) -> dict[str, Any]:
        return {"readings": [r.to_dict() for r in self.readings], "columns": [c.to_dict() for c in self.columns]}


def feature_drift_proxies(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    sample: int = DEFAULT_SAMPLE,
    seed: int = 0,
    numerical: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    min_rows: int = MIN_ROWS,
    report: bool = True,
) -> FeatureDrift:
    """Feature drift and data quality of the ``current`` contexts against the ``reference`` ones.

    Parameters
    ----------
    reference, current
        One row per decision, one column per context feature. The reference defines the columns; a column
        the current window lacks counts as all missing there, one only the current window has is ignored.
    sample
        Rows drawn (without replacement) from each window for the drift tests.
    seed
        Seed of the row samples.
    numerical, categorical
        Columns of each kind. A list left None is inferred among the reference's other columns: numbers
        (not booleans) are numerical; strings, booleans, objects and pandas categoricals are categorical;
        other dtypes (dates...) are left out.
    min_rows
        Rows each window needs, else every reading is unavailable.
    report
        Run the tests through an evidently ``Report`` and keep its snapshot (for :meth:`FeatureDrift.html`).
        Without it the same evidently tests run directly, with the same scores, and ``snapshot`` is None:
        the report renders a plotly figure per column, which costs more than the tests themselves on the
        samples of a small ledger (seconds per evaluation).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> ref = pd.DataFrame({"amount": rng.lognormal(3.0, 1.0, 5000), "country": rng.choice(["DE", "FR"], 5000)})
    >>> cur = pd.DataFrame({"amount": rng.lognormal(3.5, 1.0, 5000), "country": rng.choice(["DE", "FR", "US"], 5000)})
    >>> drift = feature_drift_proxies(ref, cur)
    >>> [(r.name, r.status, round(r.statistic, 2)) for r in drift.readings]  # doctest: +NORMALIZE_WHITESPACE
    [('drifted_columns_share', 'alert', 1.0), ('missing_share', 'ok', 0.0), ('out_of_range_share', 'ok', 0.0),
     ('unseen_categories_share', 'alert', 0.32)]
    >>> sorted(drift.scores)
    ['amount', 'country']
    """
    if not isinstance(reference, pd.DataFrame) or not isinstance(current, pd.DataFrame):
        raise ValueError("reference and current must be pandas DataFrames")
    sample = _integer(sample, "sample")
    min_rows = _integer(min_rows, "min_rows")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    kinds = _column_kinds(reference, numerical, categorical)

    for side, frame in (("reference", reference), ("current", current)):
        if len(frame) < min_rows:
            return _unavailable(f"{side} window has {len(frame)} rows, fewer than the {min_rows} needed")
    if not kinds:
        return _unavailable("no numerical or categorical context column to compare")

    rng = np.random.default_rng(seed)
    ref = _prepared(_sample(reference, kinds, sample, rng), kinds, "reference")
    cur = _prepared(_sample(current, kinds, sample, rng), kinds, "current")
    drift_reading, columns, snapshot = _drift(ref, cur, kinds, report)
    readings = (
        drift_reading,
        _missing(ref, cur),
        _out_of_range(reference, cur, [c for c, k in kinds.items() if k == "numerical"]),
        _unseen(reference, cur, [c for c, k in kinds.items() if k == "categorical"]),
    )
    return FeatureDrift(readings, columns, snapshot)


def _integer(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _column_kinds(
    reference: pd.DataFrame, numerical: Sequence[str] | None, categorical: Sequence[str] | None
) -> dict[str, Kind]:
    """Column -> kind, in the reference's column order."""
    given: dict[str, Kind] = {}
    for kind, names in (("numerical", numerical), ("categorical", categorical)):
        if isinstance(names, str):
            raise ValueError(f"{kind} must be a list of column names, not the string {names!r}")
        for name in names or ():
            if name not in reference.columns:
                raise ValueError(f"{kind} column {name!r} is not in the reference frame")
            if given.setdefault(name, kind) != kind:
                raise ValueError(f"column {name!r} is listed as both numerical and categorical")
    if not all(isinstance(name, str) for name in reference.columns):
        raise ValueError("context column names must be strings (they key the JSON detail)")
    kinds: dict[str, Kind] = {}
    for name in reference.columns:
        dtype = reference[name].dtype
        is_number = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
        if name in given:
            if given[name] == "numerical" and not is_number:
                raise ValueError(f"numerical column {name!r} has dtype {dtype} in the reference, not a number")
            kinds[name] = given[name]
        elif (numerical is None and is_number) or (categorical is None and _is_categorical(dtype)):
            kinds[name] = "numerical" if is_number else "categorical"
    return kinds


def _is_categorical(dtype: Any) -> bool:
    return (
        pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
    )


def _prepared(frame: pd.DataFrame, kinds: dict[str, Kind], side: str) -> pd.DataFrame:
    """The analysed columns: numerical as float64, categorical as Python objects (comparable across windows)."""
    columns = {}
    for name, kind in kinds.items():
        values = frame[name]
        if kind == "categorical":
            columns[name] = values.astype(object)
        elif pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
            columns[name] = values.astype(np.float64)
        elif values.isna().all():  # e.g. a vanished column, all None
            columns[name] = pd.Series(np.nan, index=values.index)
        else:
            raise ValueError(f"numerical column {name!r} has dtype {values.dtype} in the {side} frame, not a number")
    return pd.DataFrame(columns, index=frame.index)


def _sample(frame: pd.DataFrame, kinds: dict[str, Kind], size: int, rng: np.random.Generator) -> pd.DataFrame:
    """``size`` rows (all if fewer) of the analysed columns; a column the frame lacks comes back all missing."""
    if len(frame) > size:
        frame = frame.iloc[np.sort(rng.choice(len(frame), size=size, replace=False))]
    return frame.reindex(columns=list(kinds)).reset_index(drop=True)


def _unavailable(reason: str) -> FeatureDrift:
    return FeatureDrift(
        (
            unavailable(
                "drifted_columns_share",
                CATEGORY,
                reason,
                cap=DRIFTED_SHARE_CAP,
                trigger=DRIFTED_SHARE_TRIGGER,
                covers=DRIFT_COVERS,
            ),
            unavailable(
                "missing_share", CATEGORY, reason, cap=MISSING_CAP, trigger=MISSING_TRIGGER, covers=QUALITY_COVERS
            ),
            _unsupported_unavailable("out_of_range_share", reason),
            _unsupported_unavailable("unseen_categories_share", reason),
        )
    )


def _unsupported_unavailable(name: str, reason: str) -> ProxyReading:
    return unavailable(name, CATEGORY, reason, cap=UNSUPPORTED_CAP, trigger=UNSUPPORTED_TRIGGER, covers=QUALITY_COVERS)


def _unsupported_reading(name: str, shares: dict[str, float], extra: dict[str, Any]) -> ProxyReading:
    return reading(
        name,
        CATEGORY,
        max(shares.values()),
        cap=UNSUPPORTED_CAP,
        trigger=UNSUPPORTED_TRIGGER,
        covers=QUALITY_COVERS,
        detail={"shares": shares, **extra},
    )


# -- drift tests -------------------------------------------------------------------------------------------


def alarm_count(n_columns: int) -> int:
    """Drifted columns, of ``n_columns`` tested, at which ``drifted_columns_share`` alerts: ``max(1, ceil(0.1 k))``.

    >>> alarm_count(6), alarm_count(9), alarm_count(10), alarm_count(11), alarm_count(21)
    (1, 1, 1, 2, 3)
    """
    n_columns = _integer(n_columns, "n_columns")
    # The rounding guard keeps 0.1 * 30 = 3.0000000000000004 at 3.
    return max(1, math.ceil(round(DRIFTED_SHARE_TRIGGER * n_columns, 9)))


def column_alarm_level(n_columns: int) -> float:
    """The level each of ``n_columns`` columns is tested at: ``FALSE_ALARM_LEVEL * alarm_count(k) / k``.

    By Markov's inequality the count of drifted columns then reaches :func:`alarm_count` with probability at
    most :data:`FALSE_ALARM_LEVEL` without drift, however the columns depend on each other.

    >>> round(column_alarm_level(1), 4), round(column_alarm_level(9), 5), round(column_alarm_level(21), 5)
    (0.01, 0.00111, 0.00143)
    """
    return FALSE_ALARM_LEVEL * alarm_count(n_columns) / n_columns


def drift_threshold(kind: Kind, reference: pd.Series, current: pd.Series, level: float) -> float:
    """A column's drift threshold: the effect-size floor or the no-drift bound at ``level``, the larger.

    Parameters
    ----------
    kind
        ``numerical`` (threshold on evidently's ``wasserstein``, ``W1 / sd(reference)``) or ``categorical``
        (on ``jensenshannon``).
    reference, current
        The column's non-missing values in each window's sample.
    level
        Probability, without drift, that the distance reaches the threshold (an upper bound; see the module
        docstring for the formulas).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    scale = 1.0 / reference.size + 1.0 / current.size
    if kind == "categorical":
        k = len(set(pd.unique(reference)) | set(pd.unique(current)))
        return float(np.sqrt(DRIFT_THRESHOLD**2 + chi2.ppf(1.0 - level, max(k - 1, 1)) * scale / 8.0))
    ref_values = reference.to_numpy(dtype=np.float64)
    pooled = np.sort(np.concatenate([ref_values, current.to_numpy(dtype=np.float64)]))
    f = np.arange(1, pooled.size) / pooled.size
    j = float(np.sum(np.diff(pooled) * np.sqrt(f * (1.0 - f))))
    spread = float(np.max(np.abs(pooled - np.median(pooled))))
    bound = (np.sqrt(2.0 / np.pi) * j + norm.isf(level) * float(np.std(pooled))) * np.sqrt(scale)
    bound += np.log(1.0 / level) / 3.0 * spread / min(reference.size, current.size)
    sd = max(float(np.std(ref_values)), 0.001)  # evidently's normalisation, floor included
    return float(max(DRIFT_THRESHOLD, bound / sd))


def _drift(
    reference: pd.DataFrame, current: pd.DataFrame, kinds: dict[str, Kind], report: bool = True
) -> tuple[ProxyReading, tuple[ColumnDrift, ...], Snapshot | None]:
    # Imported here: evidently takes seconds to import and only this proxy needs it.
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount, ValueDrift

    values: dict[str, tuple[pd.Series, pd.Series]] = {}
    skipped: dict[str, str] = {}
    for name in kinds:
        ref_values, cur_values = reference[name].dropna(), current[name].dropna()
        if ref_values.empty or cur_values.empty:
            skipped[name] = f"all values missing in the {'reference' if ref_values.empty else 'current'} sample"
            continue
        values[name] = (ref_values, cur_values)
    if not values:
        reason = "every context column is all missing on one side"
        spec = {"cap": DRIFTED_SHARE_CAP, "trigger": DRIFTED_SHARE_TRIGGER, "covers": DRIFT_COVERS}
        return unavailable("drifted_columns_share", CATEGORY, reason, **spec), (), None
    level = column_alarm_level(len(values))
    thresholds = {name: drift_threshold(kinds[name], ref, cur, level) for name, (ref, cur) in values.items()}
    # Share and trigger are both count / len(values), so "share >= trigger" is "count >= alarm_count" exactly.
    spec = {"cap": DRIFTED_SHARE_CAP, "trigger": alarm_count(len(values)) / len(values), "covers": DRIFT_COVERS}

    tested = list(thresholds)
    methods = {c: NUMERICAL_METHOD if kinds[c] == "numerical" else CATEGORICAL_METHOD for c in tested}
    if not report:
        columns = tuple(
            ColumnDrift(
                column=c,
                kind=kinds[c],
                method=methods[c],
                score=_distance(values[c][0], values[c][1], kinds[c], methods[c], thresholds[c]),
                threshold=thresholds[c],
                n_reference=int(values[c][0].size),
                n_current=int(values[c][1].size),
            )
            for c in tested
        )
        share = sum(c.drifted for c in columns) / len(columns)
        return _drift_reading(columns, share, skipped, level, spec, reference, current), columns, None
    value_drifts = [ValueDrift(column=c, method=methods[c], threshold=thresholds[c]) for c in tested]
    drifted_count = DriftedColumnsCount(columns=tested, per_column_method=methods, per_column_threshold=thresholds)
    definition = DataDefinition(
        numerical_columns=[c for c in tested if kinds[c] == "numerical"],
        categorical_columns=[c for c in tested if kinds[c] == "categorical"],
    )
    # Evidently also correlates the columns; a constant one divides 0 by 0 there, harmless to the drift scores.
    with np.errstate(divide="ignore", invalid="ignore"):
        snapshot = Report([*value_drifts, drifted_count]).run(
            Dataset.from_pandas(current[tested], data_definition=definition),
            Dataset.from_pandas(reference[tested], data_definition=definition),
        )
    results = snapshot.metric_results
    columns = tuple(
        ColumnDrift(
            column=c,
            kind=kinds[c],
            method=methods[c],
            score=float(results[metric.metric_id].value),
            threshold=thresholds[c],
            n_reference=int(values[c][0].size),
            n_current=int(values[c][1].size),
        )
        for c, metric in zip(tested, value_drifts, strict=True)
    )
    share = float(results[drifted_count.metric_id].share.value)
    return _drift_reading(columns, share, skipped, level, spec, reference, current), columns, snapshot


def _distance(reference: pd.Series, current: pd.Series, kind: Kind, method: str, threshold: float) -> float:
    """The drift score evidently's ``ValueDrift`` gives: its stat test, on the same cleaned values."""
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    column_type = ColumnType.Numerical if kind == "numerical" else ColumnType.Categorical
    if kind == "numerical":  # evidently cleans every column so; a category cannot be infinite
        reference, current = (values.replace([-np.inf, np.inf], np.nan) for values in (reference, current))
    reference, current = reference.dropna(), current.dropna()
    test = get_stattest(reference, current, column_type, method)
    return float(test(reference, current, column_type, threshold).drift_score)


def _drift_reading(
    columns: tuple[ColumnDrift, ...],
    share: float,
    skipped: dict[str, str],
    level: float,
    spec: dict[str, Any],
    reference: pd.DataFrame,
    current: pd.DataFrame,
) -> ProxyReading:
    detail = {
        "drifted": [c.column for c in columns if c.drifted],
        "n_tested": len(columns),
        "alarm_count": alarm_count(len(columns)),
        "column_level": level,
        "skipped": skipped,
        "sample_rows": {"reference": len(reference), "current": len(current)},
        "columns": {c.column: {k: v for k, v in c.to_dict().items() if k != "column"} for c in columns},
    }
    return reading("drifted_columns_share", CATEGORY, share, **spec, detail=detail)


# -- data quality ----------------------------------------------------------------------------------------


def _missing(reference: pd.DataFrame, current: pd.DataFrame) -> ProxyReading:
    ref_share, cur_share = reference.isna().mean(), current.isna().mean()
    increase = (cur_share - ref_share).clip(lower=0.0)
    return reading(
        "missing_share",
        CATEGORY,
        float(increase.max()),
        cap=MISSING_CAP,
        trigger=MISSING_TRIGGER,
        covers=QUALITY_COVERS,
        detail={
            "increase": {c: float(v) for c, v in increase.items()},
            "reference": {c: float(v) for c, v in ref_share.items()},
            "current": {c: float(v) for c, v in cur_share.items()},
        },
    )


def _out_of_range(reference: pd.DataFrame, current: pd.DataFrame, names: list[str]) -> ProxyReading:
    """Shares of ``current`` (the sample) outside the range of every ``reference`` row."""
    shares: dict[str, float] = {}
    bounds: dict[str, list[float]] = {}
    for name in names:
        ref_values, cur_values = reference[name].astype(np.float64).to_numpy(), current[name].to_numpy()
        ref_values, cur_values = ref_values[~np.isnan(ref_values)], cur_values[~np.isnan(cur_values)]
        if ref_values.size and cur_values.size:
            low, high = float(ref_values.min()), float(ref_values.max())
            shares[name] = float(np.mean((cur_values < low) | (cur_values > high)))
            bounds[name] = [low, high]
    if not shares:
        return _unsupported_unavailable("out_of_range_share", "no numerical column with values on both sides")
    return _unsupported_reading("out_of_range_share", shares, {"reference_range": bounds})


def _unseen(reference: pd.DataFrame, current: pd.DataFrame, names: list[str]) -> ProxyReading:
    """Shares of ``current`` (the sample) never seen in any ``reference`` row."""
    shares: dict[str, float] = {}
    examples: dict[str, list[str]] = {}
    for name in names:
        # One hashing pass over the full reference column; pandas categoricals answer from their codes.
        seen = np.asarray(pd.unique(reference[name]), dtype=object)
        seen, cur_values = seen[~pd.isna(seen)], current[name].dropna()
        if seen.size == 0 or cur_values.empty:
            continue
        unseen = ~cur_values.isin(seen)
        shares[name] = float(unseen.mean())
        if unseen.any():
            examples[name] = [str(v) for v in cur_values[unseen].value_counts().index[:EXAMPLES]]
    if not shares:
        return _unsupported_unavailable("unseen_categories_share", "no categorical column with values on both sides")
    return _unsupported_reading("unseen_categories_share", shares, {"most_frequent_unseen": examples})
