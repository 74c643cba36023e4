"""Bayesian hyper-parameter search (Optuna TPE) with Hyperband pruning across folds.

Each trial scores its parameters fold by fold; after each fold the running mean is reported as
the intermediate value, so Hyperband stops unpromising trials after one or two folds.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import optuna
import pandas as pd
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from housing_assets.ml.cv import Fold, FoldCache, iter_fold_metrics, summarize
from housing_assets.ml.metrics import GREATER_IS_BETTER
from housing_assets.ml.models import FAMILIES

SearchSpace = Callable[[optuna.Trial], dict[str, Any]]

SEARCH_SPACES: dict[str, SearchSpace] = {
    "boosting": lambda t: {
        "objective": t.suggest_categorical("objective", ["huber", "regression"]),
        "alpha": t.suggest_float("alpha", 0.05, 0.5, log=True),  # huber's threshold (log price)
        # extremely randomized trees (the family's default) need more trees than classic ones
        "n_estimators": t.suggest_int("n_estimators", 300, 1350, log=True),
        "learning_rate": t.suggest_float("learning_rate", 0.02, 0.2, log=True),
        "num_leaves": t.suggest_int("num_leaves", 15, 96, log=True),
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
    scored_by: str = "search"  # or "model_comparison": its score was known, nothing was refitted


@dataclass(frozen=True)
class TuningResult:
    family: str
    metric: str
    best_params: dict[str, Any]
    best_value: float
    best_metrics: dict[str, float]
    trials: pd.DataFrame
    study: optuna.Study


FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # the trials that count toward n_trials


def worker_id() -> str:
    """Which process runs a trial: pids alone repeat across containers and hosts."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class SearchJob:
    """Everything a process needs to run trials of one study (picklable, so that other
    processes can run trials of the same study)."""

    folds: list[Fold]
    family: str
    metric: str
    seed: int  # the sampler's and every fitted regressor's
    n_jobs: int
    n_startup_trials: int = 10
    start_params: dict[str, Any] | None = None  # the first trial's parameters
    start_fold_metrics: list[dict[str, float]] | None = None  # ...and their scores, if known

    def direction(self) -> str:
        return "maximize" if GREATER_IS_BETTER[self.metric] else "minimize"

    def load_study(self, storage, study_name: str | None, worker: int = 0) -> optuna.Study:
        """The study in ``storage`` (an Optuna storage or RDB URL; None: in memory), created
        if it does not exist; ``worker`` > 0 seeds another process's sampler differently."""
        return optuna.create_study(
            direction=self.direction(),
            sampler=optuna.samplers.TPESampler(
                seed=self.seed + worker, n_startup_trials=self.n_startup_trials
            ),
            pruner=optuna.pruners.HyperbandPruner(
                min_resource=1, max_resource=len(self.folds), reduction_factor=3
            ),
            storage=storage,
            study_name=study_name,
            load_if_exists=storage is not None,
        )

    def objective(self, trial: optuna.Trial) -> float:
        family = FAMILIES[self.family]
        params = SEARCH_SPACES[self.family](trial)
        trial.set_user_attr("worker_pid", os.getpid())
        trial.set_user_attr("worker", worker_id())
        fold_metrics = []
        start = self.start_params or {}
        if self.start_fold_metrics and params == {k: start.get(k) for k in params}:
            # scored on these folds already (the comparison): replayed, pruning sees them as usual
            trial.set_user_attr("scored_by", "model_comparison")
            scores = iter(self.start_fold_metrics)
        else:
            regressor = family.build(params, self.n_jobs, seed=self.seed)
            scores = iter_fold_metrics(regressor, self.folds)
        for step, metrics in enumerate(scores):
            fold_metrics.append(metrics)
            running = sum(m[self.metric] for m in fold_metrics) / len(fold_metrics)
            trial.report(running, step)
            if trial.should_prune():
                trial.set_user_attr("metrics", summarize(fold_metrics))
                raise optuna.TrialPruned()
        summary = summarize(fold_metrics)
        trial.set_user_attr("metrics", summary)
        return summary[self.metric]

    def optimize(
        self, study: optuna.Study, n_trials: int, timeout_s: float | None = None, callbacks=()
    ) -> None:
        """Run trials until the *study* holds ``n_trials`` finished ones (whoever ran them)."""
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        limit = MaxTrialsCallback(n_trials, states=FINISHED)
        if len(_finished_trials(study)) >= n_trials:
            return
        study.optimize(
            self.objective, n_trials=n_trials, timeout=timeout_s, callbacks=[limit, *callbacks]
        )


def _finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=FINISHED)


# Runs beside this process's own trials: given the job and the study, a context entered before
# they start and left after they end (e.g. other processes running trials of the same study).
Beside = Callable[[SearchJob, optuna.Study], AbstractContextManager]


def search_job(
    cache: FoldCache,
    family_name: str,
    *,
    metric: str,
    seed: int,
    n_jobs: int,
    n_trials: int,
    start_params: dict[str, Any] | None = None,
    start_fold_metrics: list[dict[str, float]] | None = None,
) -> SearchJob:
    """The search :func:`tune` runs, as any process joining its study builds it."""
    return SearchJob(
        cache.folds(FAMILIES[family_name].scale),
        family_name,
        metric,
        seed,
        n_jobs=n_jobs,
        n_startup_trials=min(6, n_trials),  # random draws before TPE models the space
        start_params={**FAMILIES[family_name].defaults, **start_params} if start_params else None,
        start_fold_metrics=start_fold_metrics,
    )


def tune(
    cache: FoldCache,
    family_name: str,
    *,
    n_trials: int,
    metric: str,
    seed: int,
    timeout_s: float | None = None,
    n_jobs: int,
    start_params: dict[str, Any] | None = None,
    start_fold_metrics: list[dict[str, float]] | None = None,
    on_trial: Callable[[TrialRecord], None] | None = None,
    storage: str | optuna.storages.BaseStorage | None = None,
    study_name: str | None = None,
    beside: Beside | None = None,
) -> TuningResult:
    """Search ``family_name``'s space on the cached folds; ``on_trial`` sees every finished trial.

    ``seed`` seeds the sampler and every regressor fitted. ``start_params`` (e.g. the
    comparison's grid winner) is the first trial, with the family's defaults for the parameters
    it does not name. ``start_fold_metrics``, its metrics on these same folds (the comparison
    computed them), are replayed for that trial instead of refitting it. The study lives in
    ``storage`` (an Optuna storage or RDB URL; None: in memory) under ``study_name``; trials
    that others run in the same study while ``beside`` is entered count toward ``n_trials`` and
    are reported and returned as well.
    """
    job = search_job(
        cache, family_name, metric=metric, seed=seed, n_jobs=n_jobs, n_trials=n_trials,
        start_params=start_params, start_fold_metrics=start_fold_metrics,
    )  # fmt: skip
    # A fixed name, in memory too: Hyperband assigns trials to brackets by hashing the study
    # name, so a random name would make pruning, and so the whole search, differ run to run.
    study = job.load_study(storage, study_name or f"housing-{family_name}")
    if job.start_params:  # exactly the grid's winner: the search can only improve on it
        study.enqueue_trial(job.start_params, skip_if_exists=True)
    reported: set[int] = set()

    def report(trial: optuna.trial.FrozenTrial) -> None:
        if on_trial is not None and trial.number not in reported:
            reported.add(trial.number)
            on_trial(_record(trial))

    with beside(job, study) if beside else nullcontext():
        job.optimize(study, n_trials, timeout_s, callbacks=[lambda s, t: report(t)])
    for trial in sorted(_finished_trials(study), key=lambda t: t.number):  # others' trials
        report(trial)
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
        scored_by=trial.user_attrs.get("scored_by", "search"),
    )
