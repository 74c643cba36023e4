"""Bayesian hyper-parameter search (Optuna TPE) with Hyperband pruning across folds.

Each trial scores its parameters fold by fold; after each fold the running mean is reported as
the intermediate value, so Hyperband stops unpromising trials after one or two folds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
import pandas as pd

from housing_assets.ml.cv import FoldCache, iter_fold_metrics, summarize
from housing_assets.ml.metrics import GREATER_IS_BETTER
from housing_assets.ml.models import FAMILIES

SearchSpace = Callable[[optuna.Trial], dict[str, Any]]

SEARCH_SPACES: dict[str, SearchSpace] = {
    "boosting": lambda t: {
        "n_estimators": t.suggest_int("n_estimators", 200, 1500, log=True),
        "learning_rate": t.suggest_float("learning_rate", 0.02, 0.2, log=True),
        "num_leaves": t.suggest_int("num_leaves", 15, 127, log=True),
        "min_child_samples": t.suggest_int("min_child_samples", 5, 60, log=True),
        "subsample": t.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": t.suggest_float("colsample_bytree", 0.3, 1.0),
        "reg_lambda": t.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
    },
    "forest": lambda t: {
        "n_estimators": t.suggest_int("n_estimators", 50, 200, step=25),
        "max_features": t.suggest_float("max_features", 0.1, 0.8),
        "min_samples_leaf": t.suggest_int("min_samples_leaf", 1, 10),
        "max_samples": t.suggest_float("max_samples", 0.3, 0.9),
    },
    "tree": lambda t: {
        "max_depth": t.suggest_int("max_depth", 4, 24),
        "min_samples_leaf": t.suggest_int("min_samples_leaf", 1, 60, log=True),
    },
    "linear": lambda t: {"alpha": t.suggest_float("alpha", 1e-3, 100.0, log=True)},
    "knn": lambda t: {
        "n_neighbors": t.suggest_int("n_neighbors", 2, 50, log=True),
        "p": t.suggest_categorical("p", [1, 2]),
    },
}


@dataclass(frozen=True)
class TrialRecord:
    number: int
    state: str
    params: dict[str, Any]
    value: float | None
    metrics: dict[str, float]
    folds_run: int
    seconds: float


@dataclass(frozen=True)
class TuningResult:
    family: str
    metric: str
    best_params: dict[str, Any]
    best_value: float
    best_metrics: dict[str, float]
    trials: pd.DataFrame
    study: optuna.Study


def tune(
    cache: FoldCache,
    family_name: str,
    n_trials: int = 50,
    metric: str = "wmape",
    seed: int = 42,
    timeout_s: float | None = None,
    n_jobs: int = 2,
    start_params: dict[str, Any] | None = None,
    on_trial: Callable[[TrialRecord], None] | None = None,
    storage: str | None = None,
    study_name: str | None = None,
) -> TuningResult:
    """Search ``family_name``'s space on the cached folds; ``on_trial`` sees every finished trial.

    ``start_params`` (e.g. the comparison's grid winner) is enqueued as the first trial; any
    parameter it does not name is sampled as usual.
    """
    family = FAMILIES[family_name]
    space = SEARCH_SPACES[family_name]
    folds = cache.folds(family.scale)
    direction = "maximize" if GREATER_IS_BETTER[metric] else "minimize"
    study = optuna.create_study(
        direction=direction,
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, n_trials)),
        pruner=optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=len(folds), reduction_factor=3
        ),
        storage=storage,
        study_name=study_name,
        load_if_exists=storage is not None,
    )
    if start_params:
        study.enqueue_trial(start_params, skip_if_exists=True)

    def objective(trial: optuna.Trial) -> float:
        params = space(trial)
        fold_metrics = []
        for step, metrics in enumerate(iter_fold_metrics(family.build(params, n_jobs), folds)):
            fold_metrics.append(metrics)
            running = sum(m[metric] for m in fold_metrics) / len(fold_metrics)
            trial.report(running, step)
            if trial.should_prune():
                trial.set_user_attr("metrics", summarize(fold_metrics))
                raise optuna.TrialPruned()
        summary = summarize(fold_metrics)
        trial.set_user_attr("metrics", summary)
        return summary[metric]

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if on_trial is not None:
            on_trial(_record(trial))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=n_trials, timeout=timeout_s, callbacks=[callback])
    trials = pd.DataFrame([_record(t).__dict__ for t in study.trials])
    best = study.best_trial
    return TuningResult(
        family=family_name,
        metric=metric,
        best_params=dict(best.params),
        best_value=float(best.value),
        best_metrics=dict(best.user_attrs.get("metrics", {})),
        trials=trials,
        study=study,
    )


def _record(trial: optuna.trial.FrozenTrial) -> TrialRecord:
    seconds = (
        (trial.datetime_complete - trial.datetime_start).total_seconds()
        if trial.datetime_complete and trial.datetime_start
        else 0.0
    )
    return TrialRecord(
        number=trial.number,
        state=trial.state.name,
        params=dict(trial.params),
        value=None if trial.value is None else float(trial.value),
        metrics=dict(trial.user_attrs.get("metrics", {})),
        folds_run=len(trial.intermediate_values),
        seconds=seconds,
    )
