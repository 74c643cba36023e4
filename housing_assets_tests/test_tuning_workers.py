"""`housing-tuning-worker`: processes started apart from the run join the study the run opens,
read the training rows from the asset store, and refuse rows other than the ones searched.
Real worker processes on a real SQLite Optuna storage (the compose test does the same with
containers on PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from dagster import AssetKey, build_output_context

from housing_assets.datasets import HousingSplit
from housing_assets.io.tuning_workers import (
    SEARCH_ATTR,
    STATUS_ATTR,
    OpenSearch,
    train_digest,
    tune_in_processes,
)
from housing_assets.ml.pipeline import FeatureSpec
from housing_assets.ml.schema import TARGET
from housing_assets.resources.io_managers import LocalDatasetIOManager

WORKER = str(Path(sys.executable).parent / "housing-tuning-worker")


@pytest.fixture
def stored_split(synthetic_housing, tmp_path) -> HousingSplit:
    rows = synthetic_housing.dropna(subset=[TARGET])
    split = HousingSplit(
        train=rows.iloc[:450],
        test=rows.iloc[450:],
        spec=FeatureSpec(imputation_strategy="median", n_clusters=3, random_state=42),
    )
    io_manager = LocalDatasetIOManager(base_dir=str(tmp_path / "data" / "assets"))
    io_manager.handle_output(build_output_context(asset_key=AssetKey("train_test_split")), split)
    return split


def search(split: HousingSplit, **changes) -> OpenSearch:
    fields = dict(
        family="forest",
        metric="rmse",
        seed=42,
        cv_folds=2,
        n_trials=14,
        train_digest=train_digest(split.train),
        deadline=time.time() + 600,
    )
    return OpenSearch(**{**fields, **changes})


def start_workers(tmp_path: Path, storage: str, count: int) -> list[tuple[subprocess.Popen, Path]]:
    env = {
        **os.environ,
        "HOUSING_DATA_DIR": str(tmp_path / "data"),
        "HOUSING_OPTUNA_STORAGE": storage,
        "HOUSING_THREADS": "1",
    }
    env.pop("HOUSING_GCS_BUCKET", None)
    env.pop("HOUSING_DEPLOYMENT", None)
    workers = []
    for i in range(count):
        log = tmp_path / f"worker-{i}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                [WORKER, "--poll-s", "0.2"], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        workers.append((proc, log))
    deadline = time.monotonic() + 120
    while not all("watching for open studies" in log.read_text() for _, log in workers):
        assert time.monotonic() < deadline, [log.read_text()[-2000:] for _, log in workers]
        assert all(proc.poll() is None for proc, _ in workers)
        time.sleep(0.2)
    return workers


def wait_for_log(workers, text: str, timeout_s: float = 60) -> str:
    """The workers' logs once one says ``text`` (a worker logs a study after its last trial)."""
    deadline = time.monotonic() + timeout_s
    while text not in (logs := " ".join(log.read_text() for _, log in workers)):
        assert time.monotonic() < deadline, logs[-3000:]
        time.sleep(0.2)
    return logs


def stop(workers) -> None:
    for proc, _ in workers:
        proc.terminate()
        proc.wait(timeout=60)  # the worker exits at once, or 5 s later at the latest


def run_search(split: HousingSplit, storage: str, name: str, open_search: OpenSearch):
    return tune_in_processes(
        split.fold_cache(open_search.cv_folds, open_search.seed),
        open_search.family,
        n_workers=1,
        storage=storage,
        study_name=name,
        n_trials=open_search.n_trials,
        metric=open_search.metric,
        seed=open_search.seed,
        n_jobs=1,
        open_search=open_search,
    )


def test_workers_apart_from_the_run_join_its_open_study(stored_split, tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    workers = start_workers(tmp_path, storage, 2)
    try:
        result = run_search(stored_split, storage, "open-study", search(stored_split))
        logs = wait_for_log(workers, "Study open-study:")
    finally:
        stop(workers)
    finished = [t for t in result.study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert 14 <= len(finished) <= 16  # each worker may finish one in-flight trial past the limit
    by_worker = {t.user_attrs["worker"] for t in finished}
    assert len(by_worker) >= 2, by_worker  # the run and at least one worker ran trials
    assert result.study.user_attrs[STATUS_ATTR] == "closed"
    assert result.study.user_attrs[SEARCH_ATTR]["train_digest"] == train_digest(stored_split.train)
    assert "Study open-study:" in logs
    # The study the workers shared ends as good as the same search in one process: spreading
    # trials over processes costs no quality (within 3 % RMSE on these 450 rows).
    alone = run_search(stored_split, storage, "one-process", search(stored_split))
    assert result.study.best_value <= alone.study.best_value * 1.03, (
        result.study.best_value,
        alone.study.best_value,
    )


def test_workers_leave_a_study_of_other_rows_alone(stored_split, tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    workers = start_workers(tmp_path, storage, 1)
    try:
        other_rows = search(stored_split, train_digest="0" * 64, n_trials=6)
        result = run_search(stored_split, storage, "other-rows", other_rows)
        logs = wait_for_log(workers, "searches other training rows")
    finally:
        stop(workers)
    assert {t.user_attrs["worker"] for t in result.study.trials} == {
        result.study.trials[0].user_attrs["worker"]
    }  # only the run's own process
    assert "Study other-rows:" not in logs


def test_only_open_studies_within_their_deadline_are_joined(stored_split, tmp_path):
    from housing_assets.cli.tuning_worker import open_studies

    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    for name, status, deadline in [
        ("open", "open", time.time() + 60),
        ("closed", "closed", time.time() + 60),
        ("expired", "open", time.time() - 1),
    ]:
        study = optuna.create_study(storage=storage, study_name=name)
        study.set_user_attr(STATUS_ATTR, status)
        study.set_user_attr(SEARCH_ATTR, {**search(stored_split).__dict__, "deadline": deadline})
    optuna.create_study(storage=storage, study_name="a run's own study")  # never opened
    assert [name for name, _ in open_studies(storage)] == ["open"]


def test_an_open_search_needs_a_shared_storage(stored_split):
    with pytest.raises(ValueError, match="shared Optuna storage"):
        run_search(stored_split, None, "nowhere", search(stored_split))
