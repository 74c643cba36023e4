"""The promotion gate's evidence: champion and challenger scored on the same gate rows.

Plain functions on arrays and frames (no registry, no Dagster):

- :func:`paired_bootstrap`: per-row error differences of the two models, resampled together
  (a paired bootstrap), giving a confidence interval of the wMAPE difference (points) and of
  the relative RMSE difference;
- :func:`slice_table`: both models' metrics per ``ocean_proximity``, income quintile and a
  coarse region grid;
- :func:`gate_decision`: "no worse" unless the gate rows show the challenger worse beyond a
  tolerance (the lower end of an interval above it: with a 90 % interval, worse with 95 %
  confidence), or a slice with enough rows regresses beyond its bound.

Refit noise is a real difference between two fitted models, and a paired test on a few
thousand rows can resolve it; the tolerances say how large a difference counts, and the
interval says whether the gate rows can tell it from chance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

REGION_GRID_DEG = 2.0  # the coarse region grid of the slices (~17 cells over California)
SLICE_DIMENSIONS = ("ocean_proximity", "income_quintile", "region")


@dataclass(frozen=True)
class GateRules:
    """What "no worse" means. A challenger is blocked when the lower end of the paired interval
    of (challenger - champion) exceeds a tolerance (wMAPE in points, RMSE relative), or when a
    slice of at least ``slice_min_rows`` rows is worse by more than ``slice_wmape_bound_pp``."""

    wmape_tolerance_pp: float = 0.1
    rmse_tolerance: float = 0.01
    slice_min_rows: int = 200
    slice_wmape_bound_pp: float = 1.0
    bootstrap_resamples: int = 1000
    confidence: float = 0.9
    seed: int = 0


@dataclass(frozen=True)
class PairedInterval:
    """A paired-bootstrap interval of (challenger - champion) for one metric."""

    metric: str  # "wmape" (difference in points) or "rmse" (relative difference)
    point: float
    low: float
    high: float
    tolerance: float
    confidence: float

    @property
    def no_worse(self) -> bool:
        """False only when the rows show the challenger worse beyond the tolerance."""
        return bool(self.low <= self.tolerance)

    def describe(self) -> str:
        if self.metric == "wmape":
            return (
                f"wmape {self.point:+.3f} pp [{self.low:+.3f}, {self.high:+.3f}] "
                f"(tolerance +{self.tolerance} pp)"
            )
        return (
            f"rmse {self.point:+.2%} [{self.low:+.2%}, {self.high:+.2%}] "
            f"(tolerance +{self.tolerance:.0%})"
        )


def paired_bootstrap(
    y_true: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray,
    *,
    resamples: int,
    confidence: float,
    seed: int,
    wmape_tolerance_pp: float = 0.0,
    rmse_tolerance: float = 0.0,
) -> dict[str, PairedInterval]:
    """Intervals of the wMAPE difference (points) and the relative RMSE difference of two
    models' predictions on the same rows: the rows are resampled with replacement, the same
    draw for both models, ``resamples`` times (vectorised: one index matrix)."""
    y = np.asarray(y_true, dtype=float)
    new_abs = np.abs(np.asarray(challenger, dtype=float) - y)
    old_abs = np.abs(np.asarray(champion, dtype=float) - y)
    if not (len(y) == len(new_abs) == len(old_abs)) or len(y) == 0:
        raise ValueError("paired_bootstrap: need three equal, non-empty arrays")
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(y), size=(resamples, len(y)), dtype=np.int32)
    total = y[index].sum(axis=1)
    wmape = 100.0 * ((new_abs - old_abs)[index].sum(axis=1)) / total
    rmse = np.sqrt(np.square(new_abs)[index].sum(axis=1) / np.square(old_abs)[index].sum(axis=1))
    alpha = (1.0 - confidence) / 2.0
    point_wmape = 100.0 * (new_abs.sum() - old_abs.sum()) / y.sum()
    point_rmse = float(np.sqrt(np.square(new_abs).sum() / np.square(old_abs).sum()) - 1.0)

    def interval(metric: str, point: float, draws: np.ndarray, tolerance: float):
        low, high = np.quantile(draws, [alpha, 1.0 - alpha])
        return PairedInterval(metric, float(point), float(low), float(high), tolerance, confidence)

    return {
        "wmape": interval("wmape", point_wmape, wmape, wmape_tolerance_pp),
        "rmse": interval("rmse", point_rmse, rmse - 1.0, rmse_tolerance),
    }


def slice_labels(rows: pd.DataFrame) -> pd.DataFrame:
    """Each row's slice in each dimension: its ``ocean_proximity``, its income quintile (edges
    from these rows) and its cell of a coarse 2° region grid (named by the cell's centre)."""
    quintile = pd.qcut(rows["median_income"].rank(method="first"), 5, labels=False)
    edges = rows["median_income"].groupby(quintile).agg(["min", "max"])
    names = {q: f"Q{q + 1} {lo:.2f}-{hi:.2f}" for q, (lo, hi) in edges.iterrows()}
    lat = np.floor(rows["latitude"] / REGION_GRID_DEG) * REGION_GRID_DEG + REGION_GRID_DEG / 2
    lon = np.floor(rows["longitude"] / REGION_GRID_DEG) * REGION_GRID_DEG + REGION_GRID_DEG / 2
    return pd.DataFrame(
        {
            "ocean_proximity": rows["ocean_proximity"].astype(str),
            "income_quintile": quintile.map(names),
            "region": [f"{a:.0f}N {-b:.0f}W" for a, b in zip(lat, lon, strict=True)],
        },
        index=rows.index,
    )


def _metrics(y: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    abs_error = np.abs(pred - y)
    return float(100.0 * abs_error.sum() / y.sum()), float(np.sqrt(np.mean(np.square(pred - y))))


def slice_table(
    rows: pd.DataFrame,
    y_true: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray | None,
    rules: GateRules,
) -> pd.DataFrame:
    """One line per slice: rows, both models' wMAPE and RMSE, the wMAPE difference (points),
    whether the slice has enough rows to count, and whether it regressed beyond the bound."""
    y = np.asarray(y_true, dtype=float)
    new = np.asarray(challenger, dtype=float)
    old = None if champion is None else np.asarray(champion, dtype=float)
    labels = slice_labels(rows)
    lines = []
    for dimension in SLICE_DIMENSIONS:
        for value, positions in labels.groupby(labels[dimension].to_numpy()).indices.items():
            new_wmape, new_rmse = _metrics(y[positions], new[positions])
            old_wmape, old_rmse = (
                (np.nan, np.nan) if old is None else _metrics(y[positions], old[positions])
            )
            counted = len(positions) >= rules.slice_min_rows
            diff = new_wmape - old_wmape
            lines.append(
                {
                    "dimension": dimension,
                    "slice": str(value),
                    "rows": len(positions),
                    "champion_wmape": old_wmape,
                    "challenger_wmape": new_wmape,
                    "wmape_diff_pp": diff,
                    "champion_rmse": old_rmse,
                    "challenger_rmse": new_rmse,
                    "counted": counted,
                    "regressed": bool(counted and diff > rules.slice_wmape_bound_pp),
                }
            )
    return pd.DataFrame(lines)


@dataclass
class GateDecision:
    """The gate's verdict and everything it was based on."""

    promote: bool
    reason: str
    rows: int
    intervals: dict[str, PairedInterval] = field(default_factory=dict)
    slices: pd.DataFrame = field(default_factory=pd.DataFrame)
    blocked_by: list[str] = field(default_factory=list)
    challenger_metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] | None = None
    champion_predictions: np.ndarray | None = None  # on the gate rows, when compared

    def slices_markdown(self) -> str:
        """The slices that count (enough rows) as a Markdown table of wMAPE in %; every slice,
        RMSE included, is in the run's ``promotion_gate_slices.csv``."""
        if self.slices.empty:
            return ""
        lines = [
            "| slice | rows | champion wMAPE | challenger wMAPE | change (pp) | regressed |",
            "|---|--:|--:|--:|--:|---|",
        ]  # unpadded: the registry's description column is short (5,000 characters)
        for s in self.slices[self.slices["counted"]].itertuples():
            lines.append(
                f"| {s.dimension}={s.slice} | {s.rows} | {s.champion_wmape:.2f} "
                f"| {s.challenger_wmape:.2f} | {s.wmape_diff_pp:+.2f} | {'yes' if s.regressed else ''} |"
            )
        return "\n".join(lines)

    def as_json(self) -> str:
        """Compact JSON for a registry tag: the verdict, intervals and the slice table (one
        array per slice: dimension, slice, rows, champion wMAPE, challenger wMAPE)."""

        def r(value: float) -> float | None:
            return None if value is None or not np.isfinite(value) else round(float(value), 3)

        return json.dumps(
            {
                "promote": self.promote,
                "rows": self.rows,
                "blocked_by": self.blocked_by,
                "ci": {
                    k: {"point": r(v.point), "low": r(v.low), "high": r(v.high), "tol": v.tolerance}
                    for k, v in self.intervals.items()
                },
                "confidence": next(iter(self.intervals.values())).confidence
                if self.intervals
                else None,
                "slices": [
                    [s.dimension, s.slice, int(s.rows), r(s.champion_wmape), r(s.challenger_wmape)]
                    for s in self.slices.itertuples()
                ],
            },
            separators=(",", ":"),
        )


def gate_decision(
    rows: pd.DataFrame,
    y_true: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray | None,
    rules: GateRules,
) -> GateDecision:
    """Compare two models' predictions on the same gate rows (``champion`` None: there is no
    champion yet, and the challenger is promoted). Blocks when the paired interval's lower end
    of the wMAPE or RMSE difference exceeds its tolerance, or when a slice with at least
    ``slice_min_rows`` rows is worse by more than ``slice_wmape_bound_pp`` points of wMAPE."""
    from housing_assets.ml.metrics import regression_metrics

    y = np.asarray(y_true, dtype=float)
    slices = slice_table(rows, y, challenger, champion, rules)
    new_metrics = regression_metrics(y, challenger)
    if champion is None:
        return GateDecision(True, "no champion yet", len(y), {}, slices, [], new_metrics, None)
    intervals = paired_bootstrap(
        y,
        challenger,
        champion,
        resamples=rules.bootstrap_resamples,
        confidence=rules.confidence,
        seed=rules.seed,
        wmape_tolerance_pp=rules.wmape_tolerance_pp,
        rmse_tolerance=rules.rmse_tolerance,
    )
    blocked = [name for name, interval in intervals.items() if not interval.no_worse]
    regressed = slices[slices["regressed"]]
    blocked += [f"{s.dimension}={s.slice}" for s in regressed.itertuples()]
    verdict = "; ".join(interval.describe() for interval in intervals.values())
    verdict = (
        f"challenger - champion on {len(y)} gate rows, {rules.confidence:.0%} paired CI: {verdict}"
    )
    if len(regressed):
        worst = ", ".join(
            f"{s.dimension}={s.slice} {s.wmape_diff_pp:+.2f} pp ({s.rows} rows)"
            for s in regressed.itertuples()
        )
        verdict += f"; slices worse by more than {rules.slice_wmape_bound_pp} pp: {worst}"
    return GateDecision(
        promote=not blocked,
        reason=verdict,
        rows=len(y),
        intervals=intervals,
        slices=slices,
        blocked_by=blocked,
        challenger_metrics=new_metrics,
        champion_metrics=regression_metrics(y, champion),
        champion_predictions=np.asarray(champion, dtype=float),
    )
