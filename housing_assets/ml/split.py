"""The evaluation split: the contract's test rows, a gate held out of every fit, and training.

Three sides, assigned once per row in ``raw_housing`` and carried in the rows:

- ``test``: the base rows are split exactly as the project contract says (20 %, stratified on
  income category, seed 42); read once per model version, to report.
- ``gate``: a fixed share of the contract's *training* districts, chosen by a stable hash of a
  district key; no model is fitted on them, and the promotion gate compares champion and
  challenger on them.
- ``train``: everything else; every fit and every choice.

Rows that arrive later in landing batches are assigned by their **district key** (the
coordinates on the data's own 0.01° grid): a batch row whose district already has rows
follows them (where the base rows of one district lie on several sides, since the contract
splits rows, it follows the most similar of them: its original, for a re-survey), and a new
district gets the hashed assignment: test 1 in 5, then gate at :data:`GATE_FRACTION`. So a re-survey of a district (the same coordinates, a slightly
different income) lands on its original's side, and a row never changes side as data grows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from housing_assets.ml.batches import BASE_BATCH, BATCH_COLUMN
from housing_assets.ml.schema import NUMERIC_FEATURES, TARGET

TEST_SIZE = 0.2
RANDOM_STATE = 42
INCOME_BINS = [0.0, 1.5, 3.0, 4.5, 6.0, np.inf]

DISTRICT_GRID_DEG = 0.01  # the coordinates' own resolution in the source data
GATE_FRACTION = 0.15  # of the training-side districts (about 12 % of all rows)
SIDES = ("train", "gate", "test")
# Recorded on every registered version: a champion registered under another scheme (or none)
# may have been fitted on today's gate rows, so its gate score cannot be compared.
SPLIT_SCHEME = f"district{DISTRICT_GRID_DEG}-gate{GATE_FRACTION}"
_GATE_BUCKETS = 10_000


def income_category(median_income: pd.Series) -> pd.Series:
    """Géron's income category (1-5), the stratification key."""
    return pd.cut(median_income, bins=INCOME_BINS, labels=[1, 2, 3, 4, 5])


def contract_split(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The contract's split of the base rows; the original row index is kept on both sides."""
    return train_test_split(
        raw,
        test_size=TEST_SIZE,
        stratify=income_category(raw["median_income"]),
        random_state=RANDOM_STATE,
    )


def district_keys(rows: pd.DataFrame, grid_deg: float = DISTRICT_GRID_DEG) -> np.ndarray:
    """One int64 key per row: longitude and latitude rounded to ``grid_deg``. Re-surveys of a
    district (same coordinates) share it; so do the base districts that share coordinates."""
    lon = np.round(rows["longitude"].to_numpy(dtype=float) / grid_deg).astype(np.int64)
    lat = np.round(rows["latitude"].to_numpy(dtype=float) / grid_deg).astype(np.int64)
    return lon * 1_000_000 + lat


def _key_hashes(keys: np.ndarray) -> np.ndarray:
    return pd.util.hash_array(np.asarray(keys, dtype=np.int64))  # stable across processes


def hashed_to_test(keys: np.ndarray) -> np.ndarray:
    """New districts: one in five to the test side."""
    return _key_hashes(keys) % 5 == 0


def hashed_to_gate(keys: np.ndarray, fraction: float = GATE_FRACTION) -> np.ndarray:
    """Among training-side districts: ``fraction`` to the gate (a draw independent of the
    test draw, from the same hash)."""
    return (_key_hashes(keys) // 5) % _GATE_BUCKETS < round(fraction * _GATE_BUCKETS)


def _is_base(raw: pd.DataFrame) -> np.ndarray:
    if BATCH_COLUMN not in raw.columns:
        return np.ones(len(raw), dtype=bool)
    return (raw[BATCH_COLUMN] == BASE_BATCH).to_numpy()


def split_sides(raw: pd.DataFrame, gate_fraction: float = GATE_FRACTION) -> pd.Series:
    """Each row's side (``train``, ``gate`` or ``test``), indexed like ``raw``; see the module
    docstring for the rules."""
    keys = pd.Series(district_keys(raw), index=raw.index)
    is_base = _is_base(raw)
    base = raw[is_base]
    _, test = contract_split(base)
    side = pd.Series("train", index=raw.index, dtype=object)
    base_keys = keys[is_base]
    to_gate = hashed_to_gate(base_keys.to_numpy(), gate_fraction)
    side.loc[base_keys.index[to_gate]] = "gate"
    side.loc[test.index] = "test"  # exactly the contract's test rows, whatever their district
    extra = ~is_base
    if extra.any():
        side.loc[raw.index[extra]] = _batch_sides(raw, keys, is_base, side, gate_fraction)
    return side


# What a re-survey of a district shares with its original besides the coordinates (the key).
_MATCH_COLUMNS = [*[c for c in NUMERIC_FEATURES if c not in ("longitude", "latitude")], TARGET]


def _batch_sides(
    raw: pd.DataFrame, keys: pd.Series, is_base: np.ndarray, side: pd.Series, fraction: float
) -> np.ndarray:
    """Batch rows' sides: a known district's side; where the base rows of the district lie on
    several sides (the contract splits rows, not districts), the side of the most similar base
    row of the district (its original, for a re-survey); a new district's hashed side."""
    extra_keys = keys[~is_base]
    base_sides = pd.DataFrame({"key": keys[is_base], "side": side[is_base]})
    n_sides = base_sides.groupby("key")["side"].nunique()
    one_side = base_sides.drop_duplicates("key").set_index("key")["side"]
    followed = extra_keys.map(one_side[n_sides == 1])
    shared = extra_keys.isin(n_sides.index[n_sides > 1]).to_numpy()
    if shared.any():
        followed[shared] = _most_similar_side(raw, keys, is_base, side, shared)
    new = extra_keys[followed.isna()].to_numpy()
    followed[followed.isna()] = np.where(
        hashed_to_test(new), "test", np.where(hashed_to_gate(new, fraction), "gate", "train")
    )
    return followed.to_numpy()


def _most_similar_side(
    raw: pd.DataFrame, keys: pd.Series, is_base: np.ndarray, side: pd.Series, shared: np.ndarray
) -> np.ndarray:
    """For the batch rows flagged ``shared``: the side of the closest base row of their
    district (log-scale distance over the other columns; a missing value counts as equal)."""
    values = np.log1p(raw[_MATCH_COLUMNS].to_numpy(dtype=float).clip(min=0))
    batch_pos = np.flatnonzero(~is_base)[shared]
    base_pos = np.flatnonzero(is_base)
    pairs = pd.DataFrame({"key": keys.to_numpy()[batch_pos], "b": batch_pos}).merge(
        pd.DataFrame({"key": keys.to_numpy()[base_pos], "o": base_pos}), on="key"
    )
    gaps = np.nan_to_num(values[pairs["b"]] - values[pairs["o"]], nan=0.0)
    pairs["distance"] = np.square(gaps).sum(axis=1)
    closest = pairs.loc[pairs.groupby("b")["distance"].idxmin()].set_index("b")["o"]
    return side.to_numpy()[closest.loc[batch_pos].to_numpy()]


def split_train_test(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training rows and the test rows in the split's order (the gate rows are on
    neither: see :func:`split_sides`); the original row index is kept."""
    framed = assign_split(raw)
    return side_rows(framed, "train"), side_rows(framed, "test")


SPLIT_COLUMN = "split"  # "train", "gate" or "test", assigned once in raw_housing
SPLIT_ORDER_COLUMN = "split_order"  # a row's position on its side (the split's own order)
SPLIT_COLUMNS = [SPLIT_COLUMN, SPLIT_ORDER_COLUMN]


def assign_split(raw: pd.DataFrame) -> pd.DataFrame:
    """``raw`` with the split computed once and carried in two columns: each row's side, and
    its position there (the contract's order for the base rows, then the batch rows in
    arrival order, so every later step sees the training rows in the split's order)."""
    rows = raw.drop(columns=SPLIT_COLUMNS, errors="ignore")
    side = split_sides(rows)
    train, test = contract_split(rows[_is_base(rows)])
    contract_order = pd.Series(
        np.arange(len(train) + len(test)), index=train.index.append(test.index)
    )
    position = pd.Series(np.arange(len(rows)) + len(rows), index=rows.index)  # batches after
    position.loc[contract_order.index] = contract_order
    order = position.groupby(side).rank(method="first").astype(int) - 1
    return raw.assign(**{SPLIT_COLUMN: side, SPLIT_ORDER_COLUMN: order})


def side_rows(frame: pd.DataFrame, side: str) -> pd.DataFrame:
    """The rows of ``frame`` on ``side`` of the carried split, in the split's order, without
    the split columns."""
    rows = frame[frame[SPLIT_COLUMN] == side].sort_values(SPLIT_ORDER_COLUMN, kind="stable")
    return rows.drop(columns=SPLIT_COLUMNS)


def training_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The training rows of a frame that carries the split, for steps that fit on them only
    (the gate and test rows are never fitted on)."""
    return side_rows(frame, "train")


def straddling_districts(rows: pd.DataFrame, sides: pd.Series) -> pd.DataFrame:
    """Districts (keys) with rows on more than one side: one row per such district with the
    count of rows on each side. The base rows' own (the contract's split is per row) show up
    here as well as any that batches would add."""
    table = pd.crosstab(pd.Series(district_keys(rows), index=rows.index, name="district"), sides)
    return table[(table > 0).sum(axis=1) > 1]
