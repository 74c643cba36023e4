import numpy as np
import pytest

from housing_assets.ml.metrics import METRIC_NAMES, regression_metrics


def test_metrics_by_hand():
    y = np.array([100.0, 200.0, 400.0])
    p = np.array([110.0, 180.0, 400.0])
    m = regression_metrics(y, p)
    assert set(m) == set(METRIC_NAMES)
    assert m["rmse"] == pytest.approx(np.sqrt((100 + 400 + 0) / 3))
    assert m["mae"] == pytest.approx(10.0)
    assert m["mape"] == pytest.approx((10 + 10 + 0) / 3)
    assert m["wmape"] == pytest.approx(30 / 700 * 100)
    assert m["smape"] == pytest.approx((20 / 210 + 40 / 380 + 0) / 3 * 100)
    assert m["median_ape"] == pytest.approx(10.0)
    assert m["within_5pct"] == pytest.approx(100 / 3)
    assert m["within_10pct"] == pytest.approx(100.0)
    assert m["r2"] == pytest.approx(1 - 500 / np.sum((y - y.mean()) ** 2))


def test_perfect_predictions_and_bad_shapes():
    y = np.array([1.0, 2.0, 3.0])
    m = regression_metrics(y, y)
    assert m["rmse"] == 0 and m["r2"] == 1 and m["within_5pct"] == 100
    with pytest.raises(ValueError):
        regression_metrics(y, y[:2])
