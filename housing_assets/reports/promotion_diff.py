"""What a promotion decision changes, as a report a reviewer reads in one page: the data that
arrived since the champion, the metrics overall and per slice on the gate rows, the shift of
feature importances, the shift of predictions on a fixed probe set, and a map of where the
error moved. Plain pandas and matplotlib; the registry step logs it (MLflow artifact of the
challenger's version) and the asset shows it (Dagster metadata)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from housing_assets.ml.batches import BASE_BATCH, BATCH_COLUMN
from housing_assets.ml.drift import drift_table
from housing_assets.ml.gate import GateDecision
from housing_assets.ml.schema import TARGET
from housing_assets.reports.plots import to_png

PROBE_ROWS = 500  # the fixed probe set: the first base gate rows, the same for every version
SHOWN_METRICS = ("wmape", "mape", "rmse", "within_10pct")


@dataclass
class DiffReport:
    markdown: str
    figures: dict[str, bytes] = field(default_factory=dict)  # PNG per name
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


@dataclass(frozen=True)
class Versions:
    """Who is compared: the challenger, and the champion (None: there is none to compare)."""

    challenger: str
    champion: str | None
    champion_batches: frozenset[str] | None  # batches the champion's data held (None: unknown)
    champion_importances: pd.DataFrame | None  # feature, importance_pct


def data_batches(rows: pd.DataFrame) -> list[str]:
    """The landing batches in ``rows`` (every side of a split), in order of arrival."""
    if BATCH_COLUMN not in rows:
        return []
    return [b for b in pd.unique(rows[BATCH_COLUMN]) if b != BASE_BATCH]


def new_data_table(all_rows: pd.DataFrame, known: frozenset[str] | None) -> pd.DataFrame:
    """One row per batch the champion's data did not hold: its rows, and its largest PSI
    against the base training rows with the feature that has it."""
    batches = [b for b in data_batches(all_rows) if known is None or b not in known]
    table = []
    for batch in batches:
        reference = all_rows[all_rows[BATCH_COLUMN] == BASE_BATCH]
        drift = drift_table(reference, all_rows[all_rows[BATCH_COLUMN] == batch])
        worst = drift.loc[drift["psi"].idxmax()]
        table.append(
            {
                "batch": batch,
                "rows": int((all_rows[BATCH_COLUMN] == batch).sum()),
                "max_psi": float(worst["psi"]),
                "feature": worst["feature"],
                "drifted": bool(drift["drifted"].any()),
            }
        )
    return pd.DataFrame(table, columns=["batch", "rows", "max_psi", "feature", "drifted"])


def importance_shift(new: pd.DataFrame, old: pd.DataFrame | None, top: int = 10) -> pd.DataFrame:
    """Features by the largest change of their importance share (points), challenger vs
    champion."""
    merged = (
        new[["feature", "importance_pct"]]
        .merge(
            (old if old is not None else new.iloc[:0])[["feature", "importance_pct"]],
            on="feature",
            how="outer",
            suffixes=("_challenger", "_champion"),
        )
        .fillna(0.0)
    )
    merged["shift_pp"] = merged["importance_pct_challenger"] - merged["importance_pct_champion"]
    order = merged["shift_pp"].abs().sort_values(ascending=False).index
    return merged.loc[order].head(top).reset_index(drop=True)


def prediction_shift(probe: pd.DataFrame, challenger: np.ndarray, champion: np.ndarray) -> dict:
    """How the challenger's prices differ from the champion's on the probe rows (%)."""
    change = (np.asarray(challenger) / np.asarray(champion) - 1) * 100
    return {
        "probe_rows": len(probe),
        "median_change_pct": float(np.median(change)),
        "p90_abs_change_pct": float(np.percentile(np.abs(change), 90)),
        "moved_over_5pct_share": float((np.abs(change) > 5).mean() * 100),
    }


def error_change_map(gate: pd.DataFrame, challenger: np.ndarray, champion: np.ndarray) -> Figure:
    """Each gate district at its coordinates, coloured by the change of its absolute
    percentage error (challenger - champion, points): blue improved, red worse."""
    price = gate[TARGET].to_numpy(dtype=float)
    change = (np.abs(challenger - price) - np.abs(champion - price)) / price * 100
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    limit = max(float(np.percentile(np.abs(change), 95)), 1e-6)
    points = ax.scatter(
        gate["longitude"], gate["latitude"], c=change, cmap="coolwarm", vmin=-limit, vmax=limit, s=4
    )
    fig.colorbar(points, ax=ax, label="change of |error| (points of price)")
    ax.set(title="Where the error moved (gate rows)", xlabel="longitude", ylabel="latitude")
    return fig


def prediction_shift_histogram(challenger: np.ndarray, champion: np.ndarray) -> Figure:
    change = (np.asarray(challenger) / np.asarray(champion) - 1) * 100
    fig = Figure(figsize=(5.5, 3))
    ax = fig.subplots()
    ax.hist(np.clip(change, -30, 30), bins=np.linspace(-30, 30, 61), color="tab:gray")
    ax.set(title="Prediction shift on the probe rows", xlabel="challenger vs champion (%)")
    return fig


def _table(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, floatfmt=".2f") if len(frame) else "(none)"


def promotion_diff(
    versions: Versions,
    decision: GateDecision,
    verdict: str,
    all_rows: pd.DataFrame,
    gate: pd.DataFrame,
    challenger_gate: np.ndarray,
    champion_gate: np.ndarray | None,
    importances: pd.DataFrame,
) -> DiffReport:
    """The report of one decision (``verdict``: promoted or kept, with the reason)."""
    against = f"champion v{versions.champion}" if versions.champion else "no champion"
    lines = [f"# Version {versions.challenger} against {against}", "", f"**Decision:** {verdict}"]
    report = DiffReport("")

    data = new_data_table(all_rows, versions.champion_batches)
    report.tables["new_batches"] = data
    since = "since the champion" if versions.champion_batches is not None else "in the data"
    lines += ["", f"## Data {since}", ""]
    lines.append(
        f"{len(data)} landing batch(es), {int(data['rows'].sum()) if len(data) else 0} rows; "
        f"{int(data['drifted'].sum()) if len(data) else 0} drifted (PSI > 0.2 against the base "
        "training rows)."
    )
    lines += ["", _table(data.tail(20))]

    if champion_gate is None or decision.champion_metrics is None:
        lines += ["", "No champion was compared on these gate rows: nothing to diff against."]
        report.markdown = "\n".join(lines) + "\n"
        return report

    metrics = pd.DataFrame(
        {
            "metric": SHOWN_METRICS,
            "champion": [decision.champion_metrics[m] for m in SHOWN_METRICS],
            "challenger": [decision.challenger_metrics[m] for m in SHOWN_METRICS],
        }
    )
    metrics["change"] = metrics["challenger"] - metrics["champion"]
    report.tables["gate_metrics"] = metrics
    lines += ["", f"## Metrics on the {decision.rows} gate rows", "", _table(metrics)]
    slices = decision.slices_markdown()
    if slices:
        lines += ["", "### Per slice (enough rows to count)", "", slices]

    shift = importance_shift(importances, versions.champion_importances)
    report.tables["importance_shift"] = shift
    lines += ["", "## Feature importance shift (share, points)", "", _table(shift)]

    base_gate = np.flatnonzero(
        (gate[BATCH_COLUMN] == BASE_BATCH).to_numpy()
        if BATCH_COLUMN in gate
        else np.ones(len(gate), bool)
    )[:PROBE_ROWS]
    probe = prediction_shift(
        gate.iloc[base_gate], challenger_gate[base_gate], champion_gate[base_gate]
    )
    report.tables["prediction_shift"] = pd.DataFrame([probe])
    lines += [
        "",
        f"## Prediction shift on the probe set ({probe['probe_rows']} fixed base gate rows)",
        "",
        f"Median change {probe['median_change_pct']:+.2f} %; 90 % of prices move less than "
        f"{probe['p90_abs_change_pct']:.2f} %; {probe['moved_over_5pct_share']:.1f} % move more "
        "than 5 %.",
        "",
        "Figures beside this file: `prediction_shift.png`, `error_change_map.png`.",
    ]
    report.figures = {
        "prediction_shift": to_png(
            prediction_shift_histogram(challenger_gate[base_gate], champion_gate[base_gate])
        ),
        "error_change_map": to_png(error_change_map(gate, challenger_gate, champion_gate)),
    }
    report.markdown = "\n".join(lines) + "\n"
    return report
