"""The pipeline's ML work in one plain Python process, without Dagster, MLflow or W&B.

Calls the same library functions as the assets, step by step, and reports wall time and peak
resident memory per step. Used by benchmarks/run.py for the orchestration-overhead ratio and
for the scaling runs; usable on its own:

    .venv/bin/python benchmarks/bare_pipeline.py --config smoke --scale 2 --out /tmp/bare.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd


def overrides(ops: dict, asset: str, **arguments: str) -> dict:
    """The ``asset``'s values given in a Dagster run config's ``ops`` section, renamed to the
    library function's argument names. Values not given are left to the library's defaults,
    which are the assets' defaults (checked by test_definitions)."""
    given = ops.get(asset, {}).get("config", {})
    return {argument: given[key] for key, argument in arguments.items() if key in given}


class PeakRss:
    """Peak resident memory of this process between resets, read from the kernel's own
    high-water mark (VmHWM, reset through /proc/self/clear_refs): no sampling thread to disturb
    the OpenMP threads of the step being measured."""

    @staticmethod
    def reset() -> None:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")

    @staticmethod
    def peak_mb() -> float:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")


def resample(raw: pd.DataFrame, factor: float, seed: int = 0) -> pd.DataFrame:
    """``factor`` x the rows, drawn with replacement, with a small jitter so rows differ."""
    if factor == 1:
        return raw
    rng = np.random.default_rng(seed)
    rows = raw.sample(int(len(raw) * factor), replace=True, random_state=seed).reset_index(
        drop=True
    )
    n = len(rows)
    for column in ["total_rooms", "total_bedrooms", "population", "households"]:
        rows[column] = (rows[column] * rng.uniform(0.97, 1.03, n)).round()
    rows["median_income"] = (rows["median_income"] * rng.uniform(0.99, 1.01, n)).clip(0.5, 15.0001)
    rows["longitude"] += rng.normal(0, 0.005, n)
    rows["latitude"] += rng.normal(0, 0.005, n)
    return rows


def run(raw: pd.DataFrame, ops: dict, tune_family: str | None = None) -> list[dict]:
    """The seven steps with the settings of ``ops`` (a Dagster run config's ``ops`` section:
    ``{}`` for the defaults, the smoke configuration's for a smoke run). ``tune_family`` fixes
    the tuned family (for scaling runs, so that every scale measures the same work whichever
    family wins the comparison there)."""
    from housing_assets.ml.cv import FoldCache
    from housing_assets.ml.features import GEO_COLUMNS, ClusterSimilarity, cluster_feature_frame
    from housing_assets.ml.geo import select_n_clusters
    from housing_assets.ml.imputation import fit_imputer, impute_frame, masked_reconstruction
    from housing_assets.ml.metrics import regression_metrics
    from housing_assets.ml.models import FAMILIES, compare_families
    from housing_assets.ml.pipeline import FeatureSpec, build_model_pipeline
    from housing_assets.ml.schema import FEATURE_COLUMNS, NUMERIC_FEATURES, TARGET
    from housing_assets.ml.split import split_train_test, train_index
    from housing_assets.ml.tuning import tune

    steps: list[dict] = []

    @contextmanager
    def step(name: str):
        PeakRss.reset()
        start = time.perf_counter()
        yield
        steps.append(
            {
                "step": name,
                "rows": len(raw),
                "seconds": time.perf_counter() - start,
                "peak_rss_mb": PeakRss.peak_mb(),
            }
        )

    with step("imputed_housing"):
        train_numeric = raw.loc[train_index(raw), NUMERIC_FEATURES]
        comparison = masked_reconstruction(
            train_numeric, **overrides(ops, "imputed_housing", strategies="strategies")
        )
        imputer = fit_imputer(comparison.best_strategy, train_numeric)
        imputed = impute_frame(raw, NUMERIC_FEATURES, imputer)
    with step("geo_features"):
        train = imputed.loc[train_index(imputed)]
        geo = overrides(ops, "geo_features", k_grid="k_grid", cv_folds="n_folds")
        base = FeatureSpec(comparison.best_strategy, n_clusters=5)
        k, _ = select_n_clusters(train[FEATURE_COLUMNS], train[TARGET], base, **geo)
        spec = FeatureSpec(comparison.best_strategy, n_clusters=k)
        similarity = ClusterSimilarity(k).fit(train[GEO_COLUMNS])
        imputed.join(cluster_feature_frame(imputed, similarity))
    with step("train_test_split"):
        train, test = split_train_test(raw)
    with step("model_comparison"):
        cache = FoldCache(
            train[FEATURE_COLUMNS],
            train[TARGET],
            spec,
            **overrides(ops, "model_comparison", cv_folds="n_folds"),
        )
        _, leaderboard = compare_families(
            cache,
            list(FAMILIES),
            **overrides(ops, "model_comparison", max_candidates_per_family="max_candidates"),
        )
        winner = leaderboard.iloc[0]
    with step("tuned_params"):
        cache = FoldCache(
            train[FEATURE_COLUMNS],
            train[TARGET],
            spec,
            **overrides(ops, "tuned_params", cv_folds="n_folds"),
        )
        family_name = tune_family or winner["family"]
        start_params = dict(winner["params"]) if family_name == winner["family"] else None
        result = tune(
            cache,
            family_name,
            start_params=start_params,
            **overrides(ops, "tuned_params", n_trials="n_trials"),
        )
    with step("registered_model"):
        family = FAMILIES[result.family]
        pipeline = build_model_pipeline(spec, family.build(result.best_params), scale=family.scale)
        pipeline.fit(train[FEATURE_COLUMNS], train[TARGET])
        metrics = regression_metrics(test[TARGET], pipeline.predict(test[FEATURE_COLUMNS]))
    steps.append(
        {
            "step": "result",
            "family": result.family,
            "k": k,
            "imputation": comparison.best_strategy,
            "test_metrics": metrics,
        }
    )
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=["smoke", "default"], default="smoke")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--source", default=os.environ.get("HOUSING_SOURCE_URL"))
    parser.add_argument("--tune-family", help="tune this family whatever wins the comparison")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from housing_assets.ml.schema import validate_raw
    from housing_assets.ml.source import fetch, parse_payload

    start = time.perf_counter()
    fetched = fetch(args.source)
    raw = parse_payload(fetched.payload, args.source)
    validate_raw(raw, args.source)
    load_s = time.perf_counter() - start
    from housing_assets.smoke import SMOKE_OPS_CONFIG

    ops = SMOKE_OPS_CONFIG if args.config == "smoke" else {}
    steps = run(resample(raw, args.scale), ops, args.tune_family)
    steps.insert(
        0,
        {
            "step": "raw_housing",
            "rows": len(raw) * args.scale,
            "seconds": load_s,
            "peak_rss_mb": PeakRss.peak_mb(),
        },
    )
    text = json.dumps(steps, indent=2, default=float)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
