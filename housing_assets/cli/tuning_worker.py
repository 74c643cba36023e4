"""``housing-tuning-worker``: runs trials of the searches that runs open to it.

    housing-tuning-worker                 # watch HOUSING_OPTUNA_STORAGE, join open studies
    docker compose up -d --scale tuning-worker=3

A run whose ``tuned_params`` sets ``open_to_workers`` marks its Optuna study open, with the
search written on it as JSON (``OpenSearch``). Each worker polls the storage, joins an open
study, reads ``train_test_split`` from the deployment's asset store (the same IO manager the
run uses), refuses it unless its rows are the ones the run searches (a digest), and runs trials
until the study holds its ``n_trials`` finished trials, the run closes it, or its deadline
passes. Its sampler is seeded apart from the run's and the other workers'. It then waits for
the next open study. A worker that dies loses only its running trial (Optuna marks it failed,
and it does not count).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
import zlib
from typing import Any

import optuna

from housing_assets import settings as housing_settings
from housing_assets.datasets import HousingSplit
from housing_assets.io.tuning_workers import (
    SEARCH_ATTR,
    STATUS_ATTR,
    OpenSearch,
    open_storage,
    train_digest,
)
from housing_assets.ml.tuning import FINISHED, search_job, worker_id

log = logging.getLogger("housing_assets.tuning_worker")


def open_studies(
    storage: str | optuna.storages.BaseStorage, now: float | None = None
) -> list[tuple[str, OpenSearch]]:
    """The studies in ``storage`` open to workers, oldest first, with their searches."""
    now = time.time() if now is None else now
    found = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        attrs = summary.user_attrs
        if attrs.get(STATUS_ATTR) != "open" or SEARCH_ATTR not in attrs:
            continue
        search = OpenSearch(**attrs[SEARCH_ATTR])
        if search.deadline > now:
            found.append((summary.study_name, search))
    return found


class SplitCache:
    """``train_test_split`` read from the asset store once per version of its rows."""

    def __init__(self, io_manager: Any):
        self.io_manager = io_manager
        self.split: HousingSplit | None = None
        self.digest: str | None = None

    def matching(self, digest: str) -> HousingSplit | None:
        if self.digest != digest:
            self.split = self.io_manager.load(["train_test_split"])
            self.digest = train_digest(self.split.train)
        return self.split if self.digest == digest else None


def join(
    storage: str | optuna.storages.BaseStorage,
    name: str,
    search: OpenSearch,
    split: HousingSplit,
    threads: int,
) -> int:
    """Run trials of the open study ``name`` until it is full, closed or past its deadline;
    the number of trials this process finished."""
    job = search_job(
        split.fold_cache(search.cv_folds, search.seed), search.family,
        metric=search.metric, seed=search.seed, n_jobs=threads, n_trials=search.n_trials,
        start_params=search.start_params, start_fold_metrics=search.start_fold_metrics,
    )  # fmt: skip
    me = worker_id()
    study = job.load_study(storage, name, worker=1000 + zlib.crc32(me.encode()) % 100_000)

    def leave_when_closed(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if study.user_attrs.get(STATUS_ATTR) != "open" or time.time() > search.deadline:
            study.stop()

    job.optimize(
        study,
        search.n_trials,
        max(1.0, search.deadline - time.time()),
        callbacks=[leave_when_closed],
    )
    mine = [
        t
        for t in study.get_trials(deepcopy=False, states=FINISHED)
        if t.user_attrs.get("worker") == me
    ]
    return len(mine)


def _stop(signum: int, frame: Any) -> None:
    """Exit on SIGTERM; if the orderly exit has not ended the process 5 s later (a call that
    does not return, a thread that does not end), SIGALRM's default action does."""
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(5)
    sys.exit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="housing-tuning-worker", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--poll-s", type=float, default=2.0, help="seconds between looks for open studies"
    )
    parser.add_argument("--once", action="store_true", help="join the open studies once, then exit")
    args = parser.parse_args(argv)
    # Stop on SIGTERM (docker stop, a pod's end) even where the parent left it ignored, as
    # background jobs of some shells and CI runners do: the running trial ends as failed.
    signal.signal(signal.SIGTERM, _stop)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = housing_settings.load()
    if not settings.optuna_storage:
        parser.error("set HOUSING_OPTUNA_STORAGE: the Optuna storage the runs open studies in")
    from housing_assets.resources import resource_values

    splits = SplitCache(resource_values(settings)["io_manager"])
    storage = open_storage(settings.optuna_storage)
    joined: set[str] = set()
    log.info("Worker %s watching for open studies", worker_id())
    while True:
        for name, search in open_studies(storage):
            if name in joined:
                continue
            joined.add(name)
            split = splits.matching(search.train_digest)
            if split is None:
                log.warning(
                    "Study %s searches other training rows than the stored ones: left alone", name
                )
                continue
            started = time.perf_counter()
            finished = join(storage, name, search, split, settings.threads)
            log.info(
                "Study %s: %d trials finished here in %.1f s",
                name,
                finished,
                time.perf_counter() - started,
            )
        if args.once:
            return
        time.sleep(args.poll_s)


if __name__ == "__main__":
    main()
