"""train_test_split: the three sides the raw step assigned (train, gate, test)."""

from __future__ import annotations

import pandas as pd

from housing_assets.datasets import GeoFeatures, HousingSplit
from housing_assets.ml.split import side_rows

CLUSTER_COLUMNS = ["geo_cluster", "geo_cluster_similarity"]


def split_hold_out(raw: pd.DataFrame, geo: GeoFeatures) -> HousingSplit:
    """Training, gate and test rows with their raw values (the served pipeline imputes by
    itself) plus the cluster columns. Only the training rows are fitted on; the gate rows
    decide promotions; the test rows are used once per version, to report."""
    clusters = geo.frame[CLUSTER_COLUMNS]
    return HousingSplit(
        train=side_rows(raw, "train").join(clusters),
        test=side_rows(raw, "test").join(clusters),
        spec=geo.spec,
        source=geo.source,
        gate=side_rows(raw, "gate").join(clusters),
    )
