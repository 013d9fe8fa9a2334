"""Encoding of (context, action id, action features) into model inputs.

A :class:`FeatureSpace` is learned from the training frame and stored with the model, so serving encodes
exactly as training did. Numbers and booleans become numeric columns (null -> NaN). Strings become
categorical columns with a vocabulary; a category never seen in training, or a value of the wrong type,
encodes as missing (NaN) rather than failing the decision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from banditgate.policies.actions import Action, Features, Scalar

# pandas (a second of import) is imported by the functions that build or read frames: validating a policy that
# names an oracle, which every serving process does at start-up, needs none of them.
if TYPE_CHECKING:
    import pandas as pd

ACTION_ID = "action_id"
CONTEXT_PREFIX = "c:"
ACTION_PREFIX = "a:"


def category_key(value: Scalar) -> str | None:
    """The vocabulary key of a categorical value (``True`` and ``"true"`` are the same category)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def decision_row(context: Features, action: Action) -> dict[str, Scalar]:
    """One (context, action) pair as a flat row with the column names a :class:`FeatureSpace` uses."""
    row: dict[str, Scalar] = {CONTEXT_PREFIX + k: v for k, v in context.items()}
    row[ACTION_ID] = action.id
    row.update({ACTION_PREFIX + k: v for k, v in action.features.items()})
    return row


def records_to_frame(contexts: Sequence[Features], actions: Sequence[Action]) -> pd.DataFrame:
    """One row per (context, chosen action): the training frame every oracle's ``fit`` takes.

    The rows of :func:`decision_row`, built column-wise (context columns, the action id, action columns):
    several times faster than merging a dict per row, which matters at a million training rows.
    """
    import pandas as pd

    if len(contexts) != len(actions):
        raise ValueError(f"{len(contexts)} contexts but {len(actions)} actions")
    if not len(contexts):
        return pd.DataFrame()
    index = pd.RangeIndex(len(contexts))
    context_columns = pd.DataFrame.from_records(list(contexts), index=index).add_prefix(CONTEXT_PREFIX)
    ids = pd.Series([action.id for action in actions], index=index, name=ACTION_ID, dtype=object)
    features = pd.DataFrame.from_records([action.features for action in actions], index=index)
    return pd.concat([context_columns, ids, features.add_prefix(ACTION_PREFIX)], axis=1)


_NUMERIC_KINDS = {"floating", "integer", "mixed-integer-float", "boolean", "decimal", "empty"}


def _is_numeric(series: pd.Series) -> bool:
    import pandas as pd

    return pd.api.types.infer_dtype(series, skipna=True) in _NUMERIC_KINDS


def _category_keys(series: pd.Series) -> pd.Series:
    """``category_key`` of every value; strings (the common case) pass through without a Python call each."""
    import pandas as pd

    if pd.api.types.infer_dtype(series, skipna=True) == "string":
        return series
    return series.map(category_key, na_action="ignore")


@dataclass
class FeatureSpace:
    """Column layout and categorical vocabularies shared by training and serving.

    Parameters
    ----------
    numeric
        Names of numeric columns.
    categorical
        Categorical column name -> ordered vocabulary (the code of a category is its index).
    """

    numeric: list[str] = field(default_factory=list)
    categorical: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.columns = sorted([*self.numeric, *self.categorical])
        self.categorical_indices = [i for i, c in enumerate(self.columns) if c in self.categorical]
        self._codes = {c: {v: float(i) for i, v in enumerate(vocab)} for c, vocab in self.categorical.items()}
        self._index = {c: i for i, c in enumerate(self.columns)}
        context_cols = [c for c in self.columns if c.startswith(CONTEXT_PREFIX)]
        action_cols = [c for c in self.columns if c.startswith(ACTION_PREFIX)]
        self._context_slots = self._slots(context_cols, CONTEXT_PREFIX)
        self._action_slots = self._slots(action_cols, ACTION_PREFIX)
        self._action_id_slot = (self._index.get(ACTION_ID), self._codes.get(ACTION_ID, {}))

    def _slots(
        self, columns: list[str], prefix: str
    ) -> tuple[list[tuple[str, int]], list[tuple[str, int, dict[str, float]]]]:
        """(key, column index) of the numeric columns and (key, column index, codes) of the categorical ones."""
        numeric = [(c[len(prefix) :], self._index[c]) for c in columns if c not in self._codes]
        categorical = [(c[len(prefix) :], self._index[c], self._codes[c]) for c in columns if c in self._codes]
        return numeric, categorical

    @classmethod
    def fit(cls, frame: pd.DataFrame, max_categories: int = 1000) -> FeatureSpace:
        """Learn the layout from a training frame (see :func:`records_to_frame`).

        Categories beyond the ``max_categories`` most frequent of a column encode as missing, which keeps
        high-cardinality columns (BINs, merchant ids) from blowing up the model.
        """
        numeric: list[str] = []
        categorical: dict[str, list[str]] = {}
        for name in frame.columns:
            series = frame[name]
            if name != ACTION_ID and _is_numeric(series):
                numeric.append(name)
            else:
                keys = _category_keys(series.dropna())
                categorical[name] = keys.value_counts().index[:max_categories].sort_values().tolist()
        return cls(numeric=numeric, categorical=categorical)

    def transform_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode a training or evaluation frame into a float matrix (one row per frame row)."""
        import pandas as pd

        out = np.full((len(frame), len(self.columns)), np.nan)
        for name, j in self._index.items():
            if name not in frame.columns:
                continue
            series = frame[name]
            codes = self._codes.get(name)
            if codes is None:
                out[:, j] = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            else:
                vocabulary = self.categorical[name]
                index = pd.Categorical(_category_keys(series), categories=vocabulary).codes.astype(np.float64)
                index[index < 0] = np.nan  # unseen category or missing value
                out[:, j] = index
        return out

    def transform_decision(self, context: Features, actions: Sequence[Action]) -> np.ndarray:
        """Encode one decision: one row per candidate action. This is the hot path of serving.

        Rows are built as Python lists and converted once: per-cell numpy writes cost more than the encoding.
        """
        row = [np.nan] * len(self.columns)
        _fill(row, context, self._context_slots)
        id_index, id_codes = self._action_id_slot
        rows = []
        for action in actions:
            encoded = row.copy()
            if id_index is not None:
                encoded[id_index] = id_codes.get(action.id, np.nan)
            if action.features:
                _fill(encoded, action.features, self._action_slots)
            rows.append(encoded)
        return np.array(rows, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"numeric": self.numeric, "categorical": self.categorical}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpace:
        return cls(numeric=list(data["numeric"]), categorical={k: list(v) for k, v in data["categorical"].items()})


def _fill(
    row: list[float],
    values: Features,
    slots: tuple[list[tuple[str, int]], list[tuple[str, int, dict[str, float]]]],
) -> None:
    """Write the encoded ``values`` into ``row`` (which holds NaN where nothing is written).

    A missing or null value stays NaN; so does a string in a numeric column and an unseen category.
    """
    numeric, categorical = slots
    for key, j in numeric:
        value = values.get(key)
        if value is not None and not isinstance(value, str):
            row[j] = float(value)
    for key, j, codes in categorical:
        value = values.get(key)
        if value is not None:
            row[j] = codes.get(value if type(value) is str else category_key(value), np.nan)
