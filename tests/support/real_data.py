"""Real tabular data, bundled with installed packages, for the feature-drift proxy's false alarms and detection.

- Shuttle (``river.datasets.Shuttle``): 49,097 rows, 9 integer sensor readings, several of them zero-inflated
  with extreme outliers (``f2``: 59% zeros, range -4,821 to 5,075, standard deviation 85).
- RAND health insurance experiment (``statsmodels.datasets.randhie``, the 9 explanatory columns): 20,190 rows
  of log coinsurance, income, disease counts, and binary indicators down to 1.5% ones (``hlthp``).

A no-drift window pair is a random split of distinct rows (exchangeable, so any alarm is a false one); an
injected pair adds Gaussian noise of ``scale`` standard deviations (of the whole column) to ``k`` random
columns of the current window, the covariate injection of arXiv 2604.15740.

:func:`window_alarm` decides a window pair as :func:`~banditgate.monitoring.proxies.feature_drift.\
feature_drift_proxies` does for numerical columns, without building evidently's report (seconds per window):
the score is evidently's ``wasserstein`` (``W1 / max(sd(reference), 0.001)``, its
``_wasserstein_distance_norm``), the thresholds and the count are the module's.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
from scipy.stats import wasserstein_distance

from banditgate.monitoring.proxies.feature_drift import alarm_count, column_alarm_level, drift_threshold


@cache
def shuttle() -> pd.DataFrame:
    """River's Shuttle features (no download: the file ships inside the package)."""
    from river.datasets import Shuttle

    return pd.read_csv(Shuttle().path, usecols=[f"f{i}" for i in range(1, 10)]).astype(np.float64)


@cache
def rand_hie() -> pd.DataFrame:
    """Statsmodels' RAND health insurance explanatory columns (no download: bundled with statsmodels)."""
    from statsmodels.datasets import randhie

    return randhie.load_pandas().exog.astype(np.float64)


def split(frame: pd.DataFrame, rows: int, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A reference and a current window of ``rows`` distinct random rows each."""
    index = rng.permutation(len(frame))[: 2 * rows]
    return frame.iloc[index[:rows]].reset_index(drop=True), frame.iloc[index[rows:]].reset_index(drop=True)


def inject(
    frame: pd.DataFrame, current: pd.DataFrame, rng: np.random.Generator, *, k: int = 3, scale: float = 0.6
) -> pd.DataFrame:
    """``current`` with Gaussian noise of ``scale`` standard deviations (of ``frame``) on ``k`` random columns."""
    current = current.copy()
    for column in rng.choice(frame.columns, size=k, replace=False):
        current[column] = current[column] + rng.normal(0.0, scale * frame[column].std(), len(current))
    return current


def window_alarm(reference: pd.DataFrame, current: pd.DataFrame) -> tuple[bool, list[str]]:
    """Whether ``drifted_columns_share`` alerts on these numerical windows, and the drifted columns."""
    level = column_alarm_level(reference.shape[1])
    drifted = []
    for column in reference.columns:
        ref, cur = reference[column], current[column]
        score = wasserstein_distance(ref, cur) / max(float(np.std(ref)), 0.001)
        if score >= drift_threshold("numerical", ref, cur, level):
            drifted.append(column)
    return len(drifted) >= alarm_count(reference.shape[1]), drifted
