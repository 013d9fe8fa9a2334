"""Encoding of (context, action id, action features) into model inputs.

A :class:`FeatureSpace` is learned from the training frame and stored with the model, so serving encodes
exactly as training did. How each context key is used is declared per policy (:func:`parse_features`):

``numeric``
    A number (booleans are 0/1; null, a string or a missing key -> NaN).
``categorical``
    A category with the vocabulary of the training window (numbers are categories too: ``7`` and ``7.0``
    are the same one). A category never seen in training encodes as missing (NaN).
``hashed``
    A category hashed into a fixed number of buckets: bucket = CRC-32 (``zlib.crc32``, the IEEE 802.3
    polynomial) of the UTF-8 category key, modulo the number of buckets. Stable across processes and
    versions (unlike Python's ``hash()``), needs no vocabulary, and an unseen category lands in a bucket.
``excluded``
    Not used.
``auto`` (every key not declared)
    Numbers and booleans are numeric. Strings are categorical, with the frequency cut-off of
    :data:`MIN_CATEGORY_ROWS`: categories seen in fewer training rows, the categories beyond the
    :data:`MAX_CATEGORIES` most frequent, and categories unseen in training share one "other" code, for keys
    with more than :data:`HIGH_CARDINALITY` categories. High-cardinality keys (BINs, merchant ids) thus keep
    their frequent values and stop adding noise through hundreds of rare ones;
    ``benchmarks/features_experiment.py`` measures the choice.

Action features are encoded like undeclared context keys; the action id is a categorical with every action
seen in training. A value of the wrong type never fails a decision: it encodes as missing.
"""

from __future__ import annotations

import zlib
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

#: How a context key may be used (``auto`` is what an undeclared key gets).
TREATMENTS = ("numeric", "categorical", "hashed", "excluded")
#: A declaration names at most this many keys, each of at most :data:`MAX_KEY_LENGTH` characters.
MAX_DECLARED_KEYS = 256
MAX_KEY_LENGTH = 128
#: Buckets of a ``hashed`` key declared without a number, and the range a declaration may ask for.
DEFAULT_HASH_BUCKETS = 64
MIN_HASH_BUCKETS, MAX_HASH_BUCKETS = 2, 65_536
#: The automatic treatment of a string key with more than HIGH_CARDINALITY categories in the training window: a
#: category needs MIN_CATEGORY_ROWS rows to get a code of its own, and at most the MAX_CATEGORIES most frequent
#: get one; the others share an "other" code. Keys with fewer categories keep them all.
#: 2,000 rows was the best cut-off of benchmarks/features_experiment.py (14 days x 2,000 decisions: the BINs and
#: merchant ids then weigh nothing, as if excluded, and a bigger window gives their frequent values codes).
HIGH_CARDINALITY = 32
MIN_CATEGORY_ROWS = 2000
MAX_CATEGORIES = 1000


@dataclass(frozen=True)
class KeyTreatment:
    """How one context key is used: one of :data:`TREATMENTS`, and the buckets of a hashed key.

    Parameters
    ----------
    treatment
        ``numeric``, ``categorical``, ``hashed`` or ``excluded``.
    buckets
        Number of hash buckets (``hashed`` only).
    """

    treatment: str
    buckets: int | None = None

    def __post_init__(self) -> None:
        if self.treatment not in TREATMENTS:
            raise ValueError(f"unknown treatment {_short(self.treatment)}; allowed: {', '.join(TREATMENTS)}")
        if self.treatment == "hashed":
            buckets = self.buckets
            if type(buckets) is not int or not MIN_HASH_BUCKETS <= buckets <= MAX_HASH_BUCKETS:
                raise ValueError(
                    f"buckets must be an integer in [{MIN_HASH_BUCKETS}, {MAX_HASH_BUCKETS}], got {_short(buckets)}"
                )
        elif self.buckets is not None:
            raise ValueError(f"buckets apply to hashed keys only, not to {self.treatment}")

    def to_json(self) -> str | dict[str, Any]:
        """The canonical declaration: the treatment's name, or ``{"treatment": "hashed", "buckets": n}``."""
        if self.treatment == "hashed":
            return {"treatment": "hashed", "buckets": self.buckets}
        return self.treatment


def parse_features(declared: Any) -> dict[str, KeyTreatment]:
    """Validate a policy's declaration of its context keys: ``{key: treatment}``.

    A treatment is ``"numeric"``, ``"categorical"``, ``"excluded"``, ``"hashed"`` (with
    :data:`DEFAULT_HASH_BUCKETS` buckets) or ``{"treatment": "hashed", "buckets": n}``. Key names come from
    requests and settings files: at most :data:`MAX_DECLARED_KEYS` of them, each a non-empty string of at most
    :data:`MAX_KEY_LENGTH` characters. Anything else is a :class:`ValueError` naming the key and the problem.

    >>> parse_features({"bin": "hashed", "merchant_id": "excluded"})["bin"]
    KeyTreatment(treatment='hashed', buckets=64)
    >>> parse_features({"bin": "ordinal"})
    Traceback (most recent call last):
    ...
    ValueError: features['bin']: unknown treatment 'ordinal'; allowed: numeric, categorical, hashed, excluded
    """
    if declared is None:
        return {}
    if not isinstance(declared, Mapping):
        raise ValueError(f"features must be an object of context key -> treatment, got {_short(declared)}")
    if len(declared) > MAX_DECLARED_KEYS:
        raise ValueError(f"features declares {len(declared)} keys; at most {MAX_DECLARED_KEYS}")
    parsed: dict[str, KeyTreatment] = {}
    for key, value in declared.items():
        if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH:
            raise ValueError(f"features: a key must be a string of 1 to {MAX_KEY_LENGTH} characters, got {_short(key)}")
        try:
            parsed[key] = _treatment(value)
        except ValueError as exc:
            raise ValueError(f"features[{_short(key)}]: {exc}") from None
    return parsed


def features_to_json(features: Mapping[str, KeyTreatment]) -> dict[str, Any]:
    """The canonical JSON of a parsed declaration (what policies and generations record), keys sorted."""
    return {key: features[key].to_json() for key in sorted(features)}


def _treatment(value: Any) -> KeyTreatment:
    if isinstance(value, str):
        return KeyTreatment(value, DEFAULT_HASH_BUCKETS if value == "hashed" else None)
    if isinstance(value, Mapping):
        unknown = sorted(str(k) for k in set(value) - {"treatment", "buckets"})
        if unknown:
            raise ValueError(f"unknown field {_short(unknown[0])}; allowed: treatment, buckets")
        treatment = value.get("treatment")
        if not isinstance(treatment, str):
            raise ValueError(f"treatment must be one of {', '.join(TREATMENTS)}, got {_short(treatment)}")
        buckets = value.get("buckets", DEFAULT_HASH_BUCKETS if treatment == "hashed" else None)
        return KeyTreatment(treatment, buckets)
    raise ValueError(f"a treatment is one of {', '.join(TREATMENTS)} or an object, got {_short(value)}")


def bucket(key: str, buckets: int) -> int:
    """The hash bucket of a category key: CRC-32 of its UTF-8 bytes modulo ``buckets`` (stable everywhere).

    >>> bucket("411111", 64), bucket("411111", 64) == bucket("411111", 64)
    (5, True)
    """
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % buckets


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
    """Column layout, vocabularies and hash buckets shared by training and serving.

    Parameters
    ----------
    numeric
        Names of numeric columns.
    categorical
        Categorical column name -> ordered vocabulary (the code of a category is its index).
    hashed
        Hashed column name -> number of buckets (the code of a category is its :func:`bucket`).
    other
        Categorical columns whose categories outside the vocabulary (rare in training, or unseen) share the
        code ``len(vocabulary)`` instead of encoding as missing.
    features
        The declaration the space was fitted with (canonical JSON, see :func:`features_to_json`).
    """

    numeric: list[str] = field(default_factory=list)
    categorical: dict[str, list[str]] = field(default_factory=dict)
    hashed: dict[str, int] = field(default_factory=dict)
    other: list[str] = field(default_factory=list)
    features: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.columns = sorted([*self.numeric, *self.categorical, *self.hashed])
        self.categorical_indices = [i for i, c in enumerate(self.columns) if c in self.categorical or c in self.hashed]
        self._codes = {c: {v: float(i) for i, v in enumerate(vocab)} for c, vocab in self.categorical.items()}
        others = set(self.other)
        self._other_code = {c: float(len(v)) if c in others else np.nan for c, v in self.categorical.items()}
        self._index = {c: i for i, c in enumerate(self.columns)}
        context_cols = [c for c in self.columns if c.startswith(CONTEXT_PREFIX)]
        action_cols = [c for c in self.columns if c.startswith(ACTION_PREFIX)]
        self._context_slots = self._slots(context_cols, CONTEXT_PREFIX)
        self._action_slots = self._slots(action_cols, ACTION_PREFIX)
        self._action_id_slot = (self._index.get(ACTION_ID), self._codes.get(ACTION_ID, {}))

    def _slots(self, columns: list[str], prefix: str) -> _Slots:
        """(key, column index) of the numeric columns, (key, column index, codes, other code) of the categorical
        ones and (key, column index, buckets) of the hashed ones."""
        numeric = [(c[len(prefix) :], self._index[c]) for c in columns if c in self.numeric]
        categorical = [
            (c[len(prefix) :], self._index[c], self._codes[c], self._other_code[c]) for c in columns if c in self._codes
        ]
        hashed = [(c[len(prefix) :], self._index[c], self.hashed[c]) for c in columns if c in self.hashed]
        return numeric, categorical, hashed

    def cardinality(self, column: str) -> int | None:
        """Number of codes of a categorical or hashed column (its "other" code included); None if numeric."""
        if column in self.hashed:
            return self.hashed[column]
        if column in self.categorical:
            return len(self.categorical[column]) + (column in self.other)
        return None

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        features: Mapping[str, KeyTreatment] | None = None,
        min_category_rows: int | None = None,
        max_categories: int | None = None,
        high_cardinality: int | None = None,
    ) -> FeatureSpace:
        """Learn the layout from a training frame (see :func:`records_to_frame`).

        ``features`` declares the treatment of context keys (see :func:`parse_features`); every other column
        is treated automatically: numbers numeric, strings categorical. A string key with more than
        ``high_cardinality`` categories in the frame gives a code of its own only to categories with at least
        ``min_category_rows`` rows, at most the ``max_categories`` most frequent; the others share the "other"
        code. The action id keeps every action seen. Unset, the three take the module's
        :data:`MIN_CATEGORY_ROWS`, :data:`MAX_CATEGORIES` and :data:`HIGH_CARDINALITY`.
        """
        features = features or {}
        min_category_rows = MIN_CATEGORY_ROWS if min_category_rows is None else min_category_rows
        max_categories = MAX_CATEGORIES if max_categories is None else max_categories
        high_cardinality = HIGH_CARDINALITY if high_cardinality is None else high_cardinality
        numeric: list[str] = []
        categorical: dict[str, list[str]] = {}
        hashed: dict[str, int] = {}
        other: list[str] = []
        for name in frame.columns:
            declared = features.get(name[len(CONTEXT_PREFIX) :]) if name.startswith(CONTEXT_PREFIX) else None
            treatment = declared.treatment if declared is not None else "auto"
            series = frame[name]
            if treatment == "excluded":
                continue
            if treatment == "hashed":
                assert declared is not None and declared.buckets is not None
                hashed[name] = declared.buckets
            elif treatment == "numeric" or (treatment == "auto" and name != ACTION_ID and _is_numeric(series)):
                numeric.append(name)
            elif treatment == "categorical" or name == ACTION_ID:
                categorical[name] = _category_keys(series.dropna()).value_counts().index.sort_values().tolist()
            else:
                counts = _category_keys(series.dropna()).value_counts()
                kept = counts.index
                if len(counts) > high_cardinality:
                    kept = counts[counts >= min_category_rows].index[:max_categories]
                categorical[name] = kept.sort_values().tolist()
                if len(kept) < len(counts):
                    other.append(name)
        return cls(numeric, categorical, hashed, other, features_to_json(features))

    def transform_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode a training or evaluation frame into a float matrix (one row per frame row)."""
        import pandas as pd

        out = np.full((len(frame), len(self.columns)), np.nan)
        for name, j in self._index.items():
            if name not in frame.columns:
                continue
            series = frame[name]
            if name in self.hashed:
                keys = _category_keys(series)
                codes, uniques = pd.factorize(keys, use_na_sentinel=True)
                buckets = np.array([bucket(k, self.hashed[name]) for k in uniques], dtype=np.float64)
                out[:, j] = np.where(codes >= 0, buckets[np.maximum(codes, 0)] if len(buckets) else np.nan, np.nan)
            elif name in self._codes:
                vocabulary = self.categorical[name]
                keys = _category_keys(series)
                index = pd.Categorical(keys, categories=vocabulary).codes.astype(np.float64)
                # an unseen (or rare) category gets the other code; a missing value stays missing
                index[index < 0] = self._other_code[name]
                index[keys.isna().to_numpy()] = np.nan
                out[:, j] = index
            else:
                if not _is_numeric(series):  # a string is missing in a numeric column, as when serving
                    series = series.map(lambda v: None if isinstance(v, str) else v, na_action="ignore")
                out[:, j] = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
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
        return {
            "numeric": self.numeric,
            "categorical": self.categorical,
            "hashed": self.hashed,
            "other": self.other,
            "features": self.features,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpace:
        # Spaces stored before declarations existed have neither hashed nor "other" columns.
        return cls(
            numeric=list(data["numeric"]),
            categorical={k: list(v) for k, v in data["categorical"].items()},
            hashed={k: int(v) for k, v in data.get("hashed", {}).items()},
            other=list(data.get("other", [])),
            features=dict(data.get("features", {})),
        )


_Slots = tuple[list[tuple[str, int]], list[tuple[str, int, dict[str, float], float]], list[tuple[str, int, int]]]


def _fill(row: list[float], values: Features, slots: _Slots) -> None:
    """Write the encoded ``values`` into ``row`` (which holds NaN where nothing is written).

    A missing or null value stays NaN; so does a string in a numeric column. An unseen category gets its
    column's other code (NaN for a column without one).
    """
    numeric, categorical, hashed = slots
    for key, j in numeric:
        value = values.get(key)
        if value is not None and not isinstance(value, str):
            row[j] = float(value)
    for key, j, codes, other in categorical:
        value = values.get(key)
        if value is not None:
            row[j] = codes.get(value if type(value) is str else category_key(value), other)
    for key, j, buckets in hashed:
        value = values.get(key)
        if value is not None:
            text = value if type(value) is str else category_key(value)
            row[j] = float(zlib.crc32(text.encode("utf-8", "surrogatepass")) % buckets)
