"""The promotion diff report on synthetic rows: what arrived since the champion, the metrics
and slices, the importance and prediction shifts, and the figures."""

from __future__ import annotations

import numpy as np
import pandas as pd

from housing_assets.ml.gate import GateRules, gate_decision
from housing_assets.reports.promotion_diff import Versions, promotion_diff
from housing_assets_testkit import make_synthetic_housing


def _rows() -> pd.DataFrame:
    rows = make_synthetic_housing().reset_index(drop=True)  # 600 rows
    batch = np.where(np.arange(len(rows)) < 400, "base", "batch-1.csv")
    batch[500:] = "batch-2.csv"
    return rows.assign(batch=batch)


def test_the_report_names_new_batches_metrics_shifts_and_draws_the_figures():
    rows = _rows()
    gate = rows.iloc[::3].reset_index(drop=True)
    prices = gate["median_house_value"].to_numpy()
    champion = prices * 1.10  # 10 % too high everywhere
    challenger = prices * 1.05  # 5 % too high: better
    decision = gate_decision(gate, prices, challenger, champion, GateRules())
    importances = pd.DataFrame({"feature": ["income", "rooms"], "importance_pct": [70.0, 30.0]})
    old = pd.DataFrame({"feature": ["income", "age"], "importance_pct": [60.0, 40.0]})
    versions = Versions("5", "4", frozenset({"batch-1.csv"}), old)

    report = promotion_diff(
        versions, decision, "promoted: better", rows, gate, challenger, champion, importances
    )

    assert report.markdown.startswith("# Version 5 against champion v4")
    new = report.tables["new_batches"]
    assert new["batch"].tolist() == ["batch-2.csv"] and new["rows"].tolist() == [100]
    metrics = report.tables["gate_metrics"].set_index("metric")
    assert metrics.loc["wmape", "change"] < -4  # ~10 % -> ~5 %
    shift = report.tables["importance_shift"].set_index("feature")["shift_pp"]
    assert shift.to_dict() == {"age": -40.0, "rooms": 30.0, "income": 10.0}
    probe = report.tables["prediction_shift"].iloc[0]
    assert np.isclose(probe["median_change_pct"], (1.05 / 1.10 - 1) * 100)
    assert probe["probe_rows"] == (gate["batch"] == "base").sum()
    assert set(report.figures) == {"prediction_shift", "error_change_map"}
    assert all(png.startswith(b"\x89PNG") for png in report.figures.values())


def test_without_a_champion_the_report_says_so_and_lists_all_batches():
    rows = _rows()
    gate = rows.iloc[::3].reset_index(drop=True)
    prices = gate["median_house_value"].to_numpy()
    decision = gate_decision(gate, prices, prices, None, GateRules())
    importances = pd.DataFrame({"feature": ["income"], "importance_pct": [100.0]})
    report = promotion_diff(
        Versions("1", None, None, None), decision, "promoted: first", rows, gate, prices, None,
        importances,
    )  # fmt: skip
    assert "against no champion" in report.markdown and "nothing to diff against" in report.markdown
    assert report.tables["new_batches"]["batch"].tolist() == ["batch-1.csv", "batch-2.csv"]
    assert report.figures == {}
