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


def train_index(raw: pd.DataFrame) -> pd.Index:
    """Index labels of the training rows, for steps that must fit on training rows only."""
    return split_train_test(raw)[0].index
