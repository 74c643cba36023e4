"""Optuna trials on one process vs two worker processes sharing one study (sqlite storage).

    .venv/bin/python benchmarks/parallel_tuning.py [--trials 24] [--family boosting]

Same folds (real training rows, the pipeline's preprocessing), same number of finished trials;
one process with 2 threads per model vs two processes with 1 thread each.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--family", default="boosting")
    parser.add_argument("--source", default=os.environ.get("HOUSING_SOURCE_URL"))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()

    from housing_assets.ml.cv import FoldCache
    from housing_assets.ml.pipeline import FeatureSpec
    from housing_assets.ml.schema import FEATURE_COLUMNS, TARGET
    from housing_assets.ml.source import fetch, parse_payload
    from housing_assets.ml.split import split_train_test
    from housing_assets.ml.tuning import tune

    raw = parse_payload(fetch(args.source).payload, args.source)
    train, _ = split_train_test(raw)
    cache = FoldCache(train[FEATURE_COLUMNS], train[TARGET], FeatureSpec("iterative", 20))
    cache.folds()
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            start = time.perf_counter()
            out = tune(
                cache,
                args.family,
                n_trials=args.trials,
                n_workers=workers,
                storage=f"sqlite:///{tmp}/w{workers}.db",
                study_name=f"w{workers}",
            )
            seconds = time.perf_counter() - start
            done = out.trials["state"].isin(["COMPLETE", "PRUNED"]).sum()
            result[f"workers_{workers}"] = {
                "seconds": seconds,
                "finished_trials": int(done),
                "best_value": out.best_value,
            }
            print(
                f"{workers} worker(s): {done} trials in {seconds:.1f} s, best {out.best_value:.3f}"
            )
    result["ratio_2_over_1"] = result["workers_2"]["seconds"] / result["workers_1"]["seconds"]
    print(f"two workers take {result['ratio_2_over_1']:.2f} x the time of one")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "parallel_tuning.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
