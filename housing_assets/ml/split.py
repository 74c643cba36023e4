"""The evaluation split of the project contract: 20 % hold-out stratified on income category."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

TEST_SIZE = 0.2
RANDOM_STATE = 42
INCOME_BINS = [0.0, 1.5, 3.0, 4.5, 6.0, np.inf]


def income_category(median_income: pd.Series) -> pd.Series:
    """Géron's income category (1-5), the stratification key."""
    return pd.cut(median_income, bins=INCOME_BINS, labels=[1, 2, 3, 4, 5])


def split_train_test(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows exactly as the contract says; the original row index is kept on both sides."""
    return train_test_split(
        raw,
        test_size=TEST_SIZE,
        stratify=income_category(raw["median_income"]),
        random_state=RANDOM_STATE,
    )


def train_index(raw: pd.DataFrame) -> pd.Index:
    """Index labels of the training rows, for steps that must fit on training rows only."""
    return split_train_test(raw)[0].index
