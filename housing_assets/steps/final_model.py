"""registered_model: fit the tuned family on every training row and score it once on the test
rows (publishing it to the registry is ``housing_assets.io.registry``'s)."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from housing_assets.datasets import HousingSplit, TunedParams
from housing_assets.ml.metrics import regression_metrics
from housing_assets.ml.models import FAMILIES
from housing_assets.ml.pipeline import (
    SeedAveragedRegressor,
    build_model_pipeline,
    feature_importances,
)
from housing_assets.ml.schema import FEATURE_COLUMNS, TARGET


@dataclass(frozen=True)
class RegistrationSettings:
    # The promotion gate: a challenger at most this much worse than the champion on the same
    # test rows still counts as at least as good (refit noise of equal models).
    wmape_tolerance_pp: float = 0.1
    rmse_tolerance: float = 0.01
    force_promote: bool = False
    # The registered model averages this many fits of the tuned regressor with different
    # seeds (1: a single fit); see SeedAveragedRegressor.
    seeds: int = 3


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
    test_predictions: np.ndarray
    test_metrics: dict[str, float]
    importances: pd.DataFrame
    seeds: tuple[int, ...]  # of the averaged fits (none: one fit of a regressor without a seed)
    seconds: float  # fitting and scoring, without the registry


def fit_final_model(
    split: HousingSplit, tuned: TunedParams, *, threads: int, seeds: int
) -> FittedModel:
    """One pipeline from the raw columns to the price, fitted on all training rows (the mean
    of ``seeds`` fits of the tuned regressor) and scored once on the test rows."""
    start = time.perf_counter()
    family = FAMILIES[tuned.family]
    tuned_regressor = family.build(tuned.params, threads, seed=tuned.params.get("random_state"))
    fit_seeds = final_seeds(seeds, tuned_regressor.get_params().get("random_state"))
    regressor = SeedAveragedRegressor(tuned_regressor, fit_seeds)
    pipeline = build_model_pipeline(split.spec, regressor, scale=family.scale)
    pipeline.fit(split.train[FEATURE_COLUMNS], split.train[TARGET])
    predictions = pipeline.predict(split.test[FEATURE_COLUMNS])
    return FittedModel(
        pipeline=pipeline,
        test_predictions=predictions,
        test_metrics=regression_metrics(split.test[TARGET], predictions),
        importances=feature_importances(pipeline),
        seeds=fit_seeds,
        seconds=time.perf_counter() - start,
    )
