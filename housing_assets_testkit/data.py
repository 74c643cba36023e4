"""Synthetic rows in the raw schema."""

from __future__ import annotations

import numpy as np
import pandas as pd

from housing_assets.ml.schema import OCEAN_CATEGORIES, RAW_COLUMNS


def make_synthetic_housing(n: int = 600, seed: int = 0, missing: int = 20) -> pd.DataFrame:
    """Rows in the raw schema with a known structure: price rises with income and falls inland."""
    rng = np.random.default_rng(seed)
    households = rng.uniform(100, 1500, n).round()
    rooms = households * rng.uniform(3, 7, n)
    income = rng.uniform(0.5, 12, n)
    longitude = rng.uniform(-124, -115, n)
    latitude = rng.uniform(33, 41, n)
    inland = longitude > -119.5
    price = 40_000 + 35_000 * income - 60_000 * inland + rng.normal(0, 8_000, n)
    frame = pd.DataFrame(
        {
            "longitude": longitude,
            "latitude": latitude,
            "housing_median_age": rng.uniform(1, 52, n).round(),
            "total_rooms": rooms.round(),
            "total_bedrooms": (rooms * 0.2 + rng.normal(0, 5, n)).round(),
            "population": (households * rng.uniform(2, 4, n)).round(),
            "households": households,
            "median_income": income,
            "median_house_value": np.clip(price, 15_000, 500_001),
            "ocean_proximity": np.where(
                inland, "INLAND", rng.choice(OCEAN_CATEGORIES[:1] + OCEAN_CATEGORIES[2:4], n)
            ),
        }
    )[RAW_COLUMNS]
    frame.loc[rng.choice(n, size=min(missing, n // 10), replace=False), "total_bedrooms"] = np.nan
    return frame
