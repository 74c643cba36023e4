"""registered_model: fit the tuned family on every training row, report on the test rows once,
register the result and promote it when it is at least as good as the champion."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import yaml

from housing_assets.datasets import HousingSplit, RegisteredModel, TunedParams
from housing_assets.io.registry import (
    ModelRegistry,
    input_example,
    model_description,
    model_tags,
    promotion_decision,
)
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


@dataclass
class Registration:
    model: RegisteredModel
    fitted: FittedModel
    promoted: bool
    reason: str
    description: str


def fit_final_model(
    split: HousingSplit, tuned: TunedParams, *, threads: int, seeds: int
) -> FittedModel:
    """One pipeline from the raw columns to the price, fitted on all training rows (the mean
    of ``seeds`` fits of the tuned regressor) and scored once on the test rows."""
    start = time.perf_counter()
    family = FAMILIES[tuned.family]
    tuned_regressor = family.build(tuned.params, threads)
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


def register(
    split: HousingSplit,
    tuned: TunedParams,
    settings: RegistrationSettings,
    registry: ModelRegistry,
    dagster_run_id: str,
    *,
    threads: int,
) -> Registration:
    """Fit, register (inside the caller's active MLflow run) and apply the promotion gate: the
    challenger is compared with the current champion on the same test rows."""
    fitted = fit_final_model(split, tuned, threads=threads, seeds=settings.seeds)
    metrics, source = fitted.test_metrics, split.source
    description = model_description(
        tuned.family,
        tuned.params,
        tuned.cv_metrics,
        metrics,
        str(split.spec),
        source.url,
        source.sha256,
        dagster_run_id,
    )
    model_config = {
        "family": tuned.family,
        "params": tuned.params,
        "feature_spec": vars(split.spec),
        "tuning_metric": tuned.metric,
        "features": FEATURE_COLUMNS,
        "target": TARGET,
        "target_transform": "log",
        "seeds": list(fitted.seeds),
        "data": source.as_dict(),
    }
    version, mlflow_run_id = registry.log_and_register(
        fitted.pipeline,
        input_example(split.train[FEATURE_COLUMNS]),
        description,
        model_tags(tuned.family, metrics, source.sha256, dagster_run_id),
        {f"param_{k}": v for k, v in tuned.params.items()},
        {
            **{f"test_{k}": v for k, v in metrics.items()},
            **{f"cv_{k}": v for k, v in tuned.cv_metrics.items()},
        },
        {
            "model_config.yaml": yaml.safe_dump(model_config, sort_keys=False),
            "feature_importances.csv": fitted.importances.to_csv(index=False),
        },
    )
    previous = registry.champion_version()
    champion_metrics = None
    if previous:
        champion = registry.load(previous)
        champion_metrics = regression_metrics(
            split.test[TARGET], champion.predict(split.test[FEATURE_COLUMNS])
        )
    promote, reason = promotion_decision(
        metrics, champion_metrics, settings.wmape_tolerance_pp, settings.rmse_tolerance
    )
    if settings.force_promote and not promote:
        promote, reason = True, f"forced by configuration ({reason})"
    aliases = registry.record_decision(version, promote, reason, previous)
    model = RegisteredModel(
        name=registry.name,
        version=version,
        model_uri=f"models:/{registry.name}/{version}",
        run_id=mlflow_run_id,
        family=tuned.family,
        params=tuned.params,
        test_metrics=metrics,
        cv_metrics=tuned.cv_metrics,
        aliases=aliases,
    )
    return Registration(model, fitted, promote, reason, description)
