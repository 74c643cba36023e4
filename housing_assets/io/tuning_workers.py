"""Tuning workers: more processes running trials of one Optuna study.

The study lives in an RDB storage (a sqlite file, PostgreSQL) that every process joins. The
search itself is :func:`housing_assets.ml.tuning.tune`. Two kinds of worker join it:

- processes the run starts itself (``n_workers``): this module starts them
  (``python -m housing_assets.io.tuning_workers``), hands them the search job in a temporary
  file and the storage URL in their environment (``HOUSING_OPTUNA_STORAGE``), never on their
  command line: it may hold a password;
- workers started apart from the run (``housing-tuning-worker``: containers, other machines),
  when the run *opens* its study (``open_to_workers``): the study's user attributes then say
  how to rebuild the search (:class:`OpenSearch`, plain JSON), and those workers read the same
  ``train_test_split`` from the asset store and check it is the one searched.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import optuna
import pandas as pd

from housing_assets.ml.cv import FoldCache
from housing_assets.ml.tuning import SearchJob, TrialRecord, TuningResult, tune

log = logging.getLogger(__name__)

STORAGE_ENV = "HOUSING_OPTUNA_STORAGE"  # where a worker process reads the study's storage URL
SEARCH_ATTR = "housing/search"  # an open study's OpenSearch, as JSON
STATUS_ATTR = "housing/status"  # "open" while the run searches, then "closed"


@dataclass(frozen=True)
class OpenSearch:
    """What a worker apart from the run needs to rebuild its search (stored on the study)."""

    family: str
    metric: str
    seed: int
    cv_folds: int
    n_trials: int
    train_digest: str  # of the training rows searched: a worker refuses other rows
    deadline: float  # epoch seconds: after it, workers leave the study alone
    start_params: dict[str, Any] | None = None
    start_fold_metrics: list[dict[str, float]] | None = None


def train_digest(train: pd.DataFrame) -> str:
    """A digest of the training rows (values and index), the same wherever they were read."""
    hashes = pd.util.hash_pandas_object(train, index=True).to_numpy()
    return hashlib.sha256(hashes.tobytes()).hexdigest()


@contextmanager
def opened_study(study, search: OpenSearch):
    """The study open to ``housing-tuning-worker`` processes while the block runs."""
    study.set_user_attr(SEARCH_ATTR, asdict(search))
    study.set_user_attr(STATUS_ATTR, "open")
    try:
        yield
    finally:
        study.set_user_attr(STATUS_ATTR, "closed")


def open_storage(url: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    """The Optuna storage at ``url``, its tables created if missing. Processes starting together
    on an empty database race to create them; the loser retries and finds them there."""
    import sqlalchemy.exc

    for attempt in range(1, attempts):
        try:
            return optuna.storages.RDBStorage(url)
        except sqlalchemy.exc.SQLAlchemyError:
            log.info("Optuna storage not ready (attempt %d of %d); retrying", attempt, attempts)
            time.sleep(0.5 * attempt)
    return optuna.storages.RDBStorage(url)  # the last attempt: its error reaches the caller


def tune_in_processes(
    cache: FoldCache,
    family_name: str,
    *,
    n_workers: int,
    storage: str | None,
    study_name: str | None = None,
    n_trials: int,
    metric: str,
    seed: int,
    timeout_s: float | None = None,
    n_jobs: int,
    start_params: dict[str, Any] | None = None,
    start_fold_metrics: list[dict[str, float]] | None = None,
    on_trial: Callable[[TrialRecord], None] | None = None,
    open_search: OpenSearch | None = None,
) -> TuningResult:
    """:func:`housing_assets.ml.tuning.tune` with ``n_workers - 1`` worker processes running
    trials of the same study beside this one, in ``storage`` (an Optuna RDB URL), the
    ``n_jobs`` threads shared out between them; with ``open_search``, the study is also open
    to ``housing-tuning-worker`` processes while it runs. Every process's trials are reported
    and returned."""
    if (n_workers > 1 or open_search) and storage is None:
        raise ValueError("tuning workers need a shared Optuna storage (storage=...)")

    @contextmanager
    def workers(job: SearchJob, study):
        with ExitStack() as stack:
            if open_search is not None:
                stack.enter_context(opened_study(study, open_search))
            stack.enter_context(
                worker_processes(job, storage, study.study_name, n_trials, timeout_s, n_workers - 1)
            )
            yield

    return tune(
        cache,
        family_name,
        n_trials=n_trials,
        metric=metric,
        seed=seed,
        timeout_s=timeout_s,
        n_jobs=max(1, n_jobs // n_workers),
        start_params=start_params,
        start_fold_metrics=start_fold_metrics,
        on_trial=on_trial,
        storage=open_storage(storage) if storage else None,
        study_name=study_name,
        beside=workers,
    )


@contextmanager
def worker_processes(
    job: SearchJob, storage, study_name: str, n_trials: int, timeout_s: float | None, count: int
):
    """Start ``count`` worker processes on the study ``study_name`` in ``storage``; on exit,
    wait for them (an error if one failed)."""
    if count <= 0:
        yield
        return
    with TemporaryDirectory(prefix="housing-tuning-") as tmp:
        payload = Path(tmp, "job.pkl")
        payload.write_bytes(pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))
        command = [
            sys.executable,
            "-m",
            "housing_assets.io.tuning_workers",
            "--job",
            str(payload),
            "--study",
            study_name,
            "--n-trials",
            str(n_trials),
        ]
        if timeout_s:
            command += ["--timeout-s", str(timeout_s)]
        env = {**os.environ, STORAGE_ENV: str(storage)}
        workers = [
            subprocess.Popen(
                [*command, "--worker", str(i + 1), "--ready", f"{tmp}/ready-{i + 1}"], env=env
            )
            for i in range(count)
        ]
        try:
            _wait_until_ready(workers, [Path(tmp, f"ready-{i + 1}") for i in range(count)])
            yield
        finally:
            codes = [w.wait() for w in workers]
        if any(codes):
            raise RuntimeError(f"tuning worker(s) failed with exit codes {codes}")


def _wait_until_ready(
    workers: list[subprocess.Popen], markers: list[Path], timeout_s: float = 120.0
) -> None:
    """Start trials together: wait until every worker has imported and joined the study."""
    deadline = time.monotonic() + timeout_s
    while not all(m.exists() for m in markers):
        failed = [w.returncode for w in workers if w.poll() not in (None, 0)]
        if failed or time.monotonic() > deadline:
            raise RuntimeError(f"tuning workers did not start (exit codes {failed})")
        time.sleep(0.1)


def worker_main(argv: list[str] | None = None) -> None:
    """A tuning worker: joins a study in shared storage and runs trials until it is full."""
    parser = argparse.ArgumentParser(description=worker_main.__doc__)
    parser.add_argument("--job", required=True, help="pickled SearchJob (folds, family, metric)")
    parser.add_argument("--study", required=True)
    parser.add_argument("--n-trials", type=int, required=True)
    parser.add_argument("--timeout-s", type=float)
    parser.add_argument("--worker", type=int, default=1, help="seeds the sampler differently")
    parser.add_argument("--ready", help="file to create once the study is joined")
    args = parser.parse_args(argv)
    from housing_assets import settings

    storage = settings.load().optuna_storage
    if not storage:
        parser.error(f"no storage: set {STORAGE_ENV} to the study's Optuna storage URL")
    job: SearchJob = pickle.loads(Path(args.job).read_bytes())
    study = job.load_study(storage, args.study, worker=args.worker)
    if args.ready:
        Path(args.ready).touch()
    job.optimize(study, args.n_trials, args.timeout_s)


if __name__ == "__main__":
    worker_main()
