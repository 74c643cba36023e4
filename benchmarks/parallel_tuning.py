"""Optuna trials on one process vs several worker processes sharing one study (sqlite storage).

    .venv/bin/python -m benchmarks.parallel_tuning [--trials 30] [--family boosting]

Same folds (real training rows, the pipeline's preprocessing), same number of finished trials.
Two comparisons: one process using both cores vs two single-threaded worker processes (the
choice on this machine), and one, two and three single-threaded workers (the scale-out unit,
as `tuning-worker` containers are: trials per minute and the best value each reaches). On a
2-core machine the third worker shares a core: its ratio shows the overhead of sharing one
study, not a speed-up.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from benchmarks.calibration import calibrate
from benchmarks.report import add_out_argument, save_result
from housing_assets_testkit import default_source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--family", default="boosting")
    parser.add_argument("--source", default=default_source())
    add_out_argument(parser)
    args = parser.parse_args()

    from housing_assets.io.source import fetch
    from housing_assets.io.tuning_workers import tune_in_processes
    from housing_assets.ml.cv import FoldCache
    from housing_assets.ml.parsing import parse_payload
    from housing_assets.ml.pipeline import FeatureSpec
    from housing_assets.ml.schema import FEATURE_COLUMNS, TARGET
    from housing_assets.ml.split import split_train_test
    from housing_assets.steps import TuningSettings

    raw = parse_payload(fetch(args.source).payload, args.source)
    train, _ = split_train_test(raw)
    tuning = TuningSettings()  # the default run's folds, metric and seed
    cache = FoldCache(
        train[FEATURE_COLUMNS],
        train[TARGET],
        FeatureSpec("iterative", 20, random_state=tuning.seed),
        n_folds=tuning.cv_folds,
        random_state=tuning.seed,
    )
    cache.folds()
    # Two comparisons, the same number of finished trials each time:
    # - "machine": what a user of this 2-core machine chooses between: one process whose models
    #   use both cores, or two worker processes with one core each;
    # - "per_worker": the scale-out unit itself: one single-threaded worker, then two of them.
    setups = {"machine": [(1, 2), (2, 2)], "per_worker": [(1, 1), (2, 2), (3, 3)]}
    result: dict = {"calibration": calibrate(), "family": args.family, "trials": args.trials}
    with tempfile.TemporaryDirectory() as tmp:
        for name, runs in setups.items():
            result[name] = {}
            for workers, threads in runs:
                start = time.perf_counter()
                out = tune_in_processes(
                    cache,
                    args.family,
                    n_trials=args.trials,
                    metric=tuning.metric,
                    seed=tuning.seed,
                    n_workers=workers,
                    n_jobs=threads,
                    storage=f"sqlite:///{tmp}/{name}-{workers}.db",
                    study_name=f"{name}-{workers}",
                )
                seconds = time.perf_counter() - start
                done = int(out.trials["state"].isin(["COMPLETE", "PRUNED"]).sum())
                result[name][f"workers_{workers}"] = {
                    "seconds": seconds,
                    "finished_trials": done,
                    "trials_per_minute": 60 * done / seconds,
                    "threads_total": threads,
                    "best_value": out.best_value,
                }
                print(
                    f"[{name}] {workers} worker(s), {threads} thread(s) in all: {done} trials "
                    f"in {seconds:.1f} s ({60 * done / seconds:.1f}/min), best {out.best_value:.3f}",
                    flush=True,
                )
            ratio = result[name]["workers_2"]["seconds"] / result[name]["workers_1"]["seconds"]
            result[name]["ratio_2_over_1"] = ratio
            print(f"[{name}] two workers take {ratio:.2f} x the time of one", flush=True)
    save_result("parallel_tuning", result, args.out)


if __name__ == "__main__":
    main()
