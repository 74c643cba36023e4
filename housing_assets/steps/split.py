"""train_test_split: the contract's hold-out, read from the split the raw step assigned."""

from __future__ import annotations

import pandas as pd

from housing_assets.datasets import GeoFeatures, HousingSplit
from housing_assets.ml.split import side_rows

CLUSTER_COLUMNS = ["geo_cluster", "geo_cluster_similarity"]


def split_hold_out(raw: pd.DataFrame, geo: GeoFeatures) -> HousingSplit:
    """Training and test rows with their raw values (the served pipeline imputes by itself)
    plus the cluster columns; the test rows are used once, to report."""
    clusters = geo.frame[CLUSTER_COLUMNS]
    return HousingSplit(
        train=side_rows(raw, "train").join(clusters),
        test=side_rows(raw, "test").join(clusters),
        spec=geo.spec,
        source=geo.source,
    )
