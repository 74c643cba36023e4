"""The evaluation split of the project contract: 20 % hold-out stratified on income category.

The base dataset is split exactly as the contract says. Rows that arrive later in landing
batches are assigned by a hash of their content (one in five to the test side), so that a row's
side never changes as data grows: a champion and a challenger trained at different times have
both never seen the current test rows, and the base test rows stay the same forever.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from housing_assets.ml.batches import BASE_BATCH, BATCH_COLUMN
from housing_assets.ml.schema import RAW_COLUMNS

TEST_SIZE = 0.2
RANDOM_STATE = 42
INCOME_BINS = [0.0, 1.5, 3.0, 4.5, 6.0, np.inf]


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


def _hashed_to_test(rows: pd.DataFrame) -> np.ndarray:
    hashes = pd.util.hash_pandas_object(rows[RAW_COLUMNS], index=False).to_numpy()
    return hashes % 5 == 0


def split_train_test(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Contract split of the base rows plus the stable hashed assignment of batch rows."""
    if BATCH_COLUMN not in raw.columns:
        return contract_split(raw)
    is_base = (raw[BATCH_COLUMN] == BASE_BATCH).to_numpy()
    train, test = contract_split(raw[is_base])
    extra = raw[~is_base]
    to_test = _hashed_to_test(extra)
    return pd.concat([train, extra[~to_test]]), pd.concat([test, extra[to_test]])


SPLIT_COLUMN = "split"  # "train" or "test", assigned once in raw_housing
SPLIT_ORDER_COLUMN = "split_order"  # a row's position on its side (the split's own order)
SPLIT_COLUMNS = [SPLIT_COLUMN, SPLIT_ORDER_COLUMN]


def assign_split(raw: pd.DataFrame) -> pd.DataFrame:
    """``raw`` with the split computed once and carried in two columns: each row's side, and
    its position there (so every later step sees the training rows in the split's order)."""
    train, test = split_train_test(raw.drop(columns=SPLIT_COLUMNS, errors="ignore"))
    side = pd.Series("train", index=raw.index)
    side.loc[test.index] = "test"
    order = pd.Series(0, index=raw.index)
    order.loc[train.index] = range(len(train))
    order.loc[test.index] = range(len(test))
    return raw.assign(**{SPLIT_COLUMN: side, SPLIT_ORDER_COLUMN: order})


def side_rows(frame: pd.DataFrame, side: str) -> pd.DataFrame:
    """The rows of ``frame`` on ``side`` of the carried split, in the split's order, without
    the split columns."""
    rows = frame[frame[SPLIT_COLUMN] == side].sort_values(SPLIT_ORDER_COLUMN, kind="stable")
    return rows.drop(columns=SPLIT_COLUMNS)


def training_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The training rows of a frame that carries the split, for steps that fit on them only."""
    return side_rows(frame, "train")
