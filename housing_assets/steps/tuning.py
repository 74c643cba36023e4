"""tuned_params: Bayesian search of the winning family's hyper-parameters by cross-validation."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from housing_assets.datasets import HousingSplit, ModelComparison, TunedParams
from housing_assets.io.tuning_workers import OpenSearch, train_digest, tune_in_processes
from housing_assets.ml.models import FAMILIES
from housing_assets.ml.tuning import TrialRecord

OPEN_STUDY_MAX_S = 2 * 3600.0  # an open study with no timeout: workers leave it after this


@dataclass(frozen=True)
class TuningSettings:
    # Few trials: the first is the grid's winner, and Hyperband prunes the hopeless ones after
    # one fold.
    n_trials: int = 12
    cv_folds: int = 3
    metric: str = "wmape"
    seed: int = 42  # of the folds, the sampler and every regressor fitted
    timeout_s: float | None = None
    # Trial processes sharing one study; more than one needs an Optuna RDB storage URL. The
    # asset resolves the default (its environment's), a URL with a password belongs in the
    # environment: `storage: {env: HOUSING_OPTUNA_STORAGE}` in run config.
    n_workers: int = 1
    storage: str | None = None
    # Open the study to `housing-tuning-worker` processes (containers, other machines) that
    # watch the same storage: they run trials beside this run's until the study is full.
    open_to_workers: bool = False


def tune_params(
    split: HousingSplit,
    comparison: ModelComparison,
    settings: TuningSettings,
    *,
    threads: int,
    study_name: str | None = None,
    on_trial: Callable[[TrialRecord], None] | None = None,
) -> TunedParams:
    """Optuna TPE over the comparison winner's space, its grid winner as the first trial (its
    comparison score, when scored on the same folds), Hyperband pruning across folds;
    ``on_trial`` sees every finished trial (for tracking). With ``n_workers`` > 1, worker
    processes run trials of the same study in ``storage`` beside this one."""
    start_fold_metrics = _winner_fold_metrics(comparison, settings)
    open_search = None
    if settings.open_to_workers:
        open_search = OpenSearch(
            family=comparison.winner,
            metric=settings.metric,
            seed=settings.seed,
            cv_folds=settings.cv_folds,
            n_trials=settings.n_trials,
            train_digest=train_digest(split.train),
            deadline=time.time() + (settings.timeout_s or OPEN_STUDY_MAX_S),
            start_params=comparison.winner_params,
            start_fold_metrics=start_fold_metrics,
        )
    result = tune_in_processes(
        split.fold_cache(settings.cv_folds, settings.seed),
        comparison.winner,
        n_workers=settings.n_workers,
        storage=settings.storage,
        study_name=study_name if settings.storage else None,
        n_trials=settings.n_trials,
        metric=settings.metric,
        seed=settings.seed,
        timeout_s=settings.timeout_s,
        n_jobs=threads,
        start_params=comparison.winner_params,
        start_fold_metrics=start_fold_metrics,
        on_trial=on_trial,
        open_search=open_search,
    )
    family = FAMILIES[comparison.winner]
    return TunedParams(
        family=comparison.winner,
        # complete: the family's defaults and the seed too, so a later refit (a retrain, after
        # an upgrade that changed a default) builds exactly the model that was tuned
        params={**family.defaults, **result.best_params, **family.seed_params(settings.seed)},
        metric=settings.metric,
        cv_metrics=result.best_metrics,
        trials=result.trials.assign(params=result.trials["params"].map(str)),
        baseline_params=comparison.winner_params,
        best_trial=result.study.best_trial.number,
        cv_value=result.best_value,
        spec=split.spec,
    )


def _winner_fold_metrics(
    comparison: ModelComparison, settings: TuningSettings
) -> list[dict[str, float]] | None:
    """The grid winner's metrics fold by fold, if the comparison scored it on the folds the
    search uses."""
    same_folds = (comparison.cv_folds, comparison.seed) == (settings.cv_folds, settings.seed)
    if not same_folds:
        return None
    return json.loads(comparison.leaderboard["fold_metrics"].iloc[0])
