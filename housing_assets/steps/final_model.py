"""registered_model: fit the tuned family on every training row, predict the gate rows (where
the promotion gate compares it with the champion, and where its conformal intervals are
calibrated) and, once the gate has decided, score it once on the test rows (publishing it to the registry is ``housing_assets.io.registry``'s)."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from housing_assets.datasets import HousingSplit, TunedParams
from housing_assets.ml.gate import GateRules
from housing_assets.ml.intervals import (
    INTERVAL_LEVEL,
    ConformalIntervals,
    fit_conformal,
    interval_report,
)
from housing_assets.ml.metrics import regression_metrics
from housing_assets.ml.models import FAMILIES
from housing_assets.ml.pipeline import (
    SeedAveragedRegressor,
    build_model_pipeline,
    feature_importances,
)
from housing_assets.ml.schema import FEATURE_COLUMNS, TARGET

_RULES = GateRules()


@dataclass(frozen=True)
class RegistrationSettings:
    # The promotion gate, on the gate rows (never fitted on): the challenger is blocked when
    # the lower end of the paired bootstrap interval of (challenger - champion) exceeds one of
    # these tolerances (worse beyond refit noise, with (1 + confidence) / 2 confidence) ...
    wmape_tolerance_pp: float = _RULES.wmape_tolerance_pp
    rmse_tolerance: float = _RULES.rmse_tolerance
    # ... and no slice (ocean_proximity, income quintile, region) with at least
    # slice_min_rows gate rows may be worse by more than slice_wmape_bound_pp points of wMAPE.
    slice_min_rows: int = _RULES.slice_min_rows
    slice_wmape_bound_pp: float = _RULES.slice_wmape_bound_pp
    bootstrap_resamples: int = _RULES.bootstrap_resamples
    confidence: float = _RULES.confidence  # of the two-sided interval
    force_promote: bool = False
    # The registered model averages this many fits of the tuned regressor with different
    # seeds (1: a single fit); see SeedAveragedRegressor.
    seeds: int = 3

    def gate_rules(self) -> GateRules:
        return GateRules(
            wmape_tolerance_pp=self.wmape_tolerance_pp,
            rmse_tolerance=self.rmse_tolerance,
            slice_min_rows=self.slice_min_rows,
            slice_wmape_bound_pp=self.slice_wmape_bound_pp,
            bootstrap_resamples=self.bootstrap_resamples,
            confidence=self.confidence,
        )


def final_seeds(count: int, first: int | None) -> tuple[int, ...]:
    """The seeds of the ``count`` final fits: ``first``, the tuned regressor's own seed (so one
    member is the model the search scored), then 1, 2, ...; none for a regressor without a
    seed, which is fitted once."""
    if count < 1:
        raise ValueError(f"registered_model: seeds must be at least 1, got {count}")
    if first is None:
        return ()
    others = (seed for seed in itertools.count(1) if seed != first)
    return (first, *itertools.islice(others, count - 1))


@dataclass
class FittedModel:
    pipeline: Any  # raw feature columns -> price: every fitted transformer inside
    gate_predictions: np.ndarray | None  # None: the split has no gate rows
    importances: pd.DataFrame
    seeds: tuple[int, ...]  # of the averaged fits (none: one fit of a regressor without a seed)
    seconds: float  # fitting and scoring, without the registry
    # Conformal intervals calibrated on the gate rows (None: the split has no gate rows).
    intervals: ConformalIntervals | None = None
    # Filled by score_on_test, after the promotion decision: the test rows are read once.
    test_predictions: np.ndarray | None = None
    test_metrics: dict[str, float] | None = None
    test_intervals: dict[str, float] | None = None  # coverage and width at INTERVAL_LEVEL


def fit_challenger(
    split: HousingSplit, tuned: TunedParams, *, threads: int, seeds: int
) -> FittedModel:
    """One pipeline from the raw columns to the price, fitted on the training rows only (the
    mean of ``seeds`` fits of the tuned regressor), with its predictions on the gate rows."""
    start = time.perf_counter()
    family = FAMILIES[tuned.family]
    tuned_regressor = family.build(tuned.params, threads, seed=tuned.params.get("random_state"))
    fit_seeds = final_seeds(seeds, tuned_regressor.get_params().get("random_state"))
    regressor = SeedAveragedRegressor(tuned_regressor, fit_seeds)
    pipeline = build_model_pipeline(split.spec, regressor, scale=family.scale)
    pipeline.fit(split.train[FEATURE_COLUMNS], split.train[TARGET])
    gate = split.gate
    has_gate = gate is not None and not gate.empty
    gate_predictions = pipeline.predict(gate[FEATURE_COLUMNS]) if has_gate else None
    return FittedModel(
        pipeline=pipeline,
        gate_predictions=gate_predictions,
        importances=feature_importances(pipeline),
        seeds=fit_seeds,
        seconds=time.perf_counter() - start,
        intervals=fit_conformal(gate, gate[TARGET], gate_predictions) if has_gate else None,
    )


def score_on_test(fitted: FittedModel, split: HousingSplit) -> FittedModel:
    """``fitted`` with its predictions and metrics on the test rows: the one look at them."""
    start = time.perf_counter()
    predictions = fitted.pipeline.predict(split.test[FEATURE_COLUMNS])
    test_intervals = None
    if fitted.intervals is not None:
        lower, upper = fitted.intervals.bounds(split.test, predictions, INTERVAL_LEVEL)
        test_intervals = interval_report(split.test[TARGET], predictions, lower, upper)
    return replace(
        fitted,
        test_predictions=predictions,
        test_metrics=regression_metrics(split.test[TARGET], predictions),
        test_intervals=test_intervals,
        seconds=fitted.seconds + time.perf_counter() - start,
    )


def fit_final_model(
    split: HousingSplit, tuned: TunedParams, *, threads: int, seeds: int
) -> FittedModel:
    """The step without the registry (no gate to pass): fit, predict the gate rows, and
    score once on the test rows."""
    return score_on_test(fit_challenger(split, tuned, threads=threads, seeds=seeds), split)
