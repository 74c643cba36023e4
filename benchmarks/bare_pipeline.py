"""The pipeline's ML work in one plain Python process, without Dagster, MLflow or W&B.

Calls the same library functions as the assets, step by step, and reports wall time and peak
resident memory per step. Used by benchmarks/run.py for the orchestration-overhead ratio and
for the scaling runs; usable on its own:

    .venv/bin/python -m benchmarks.bare_pipeline --config smoke --scale 2 --out /tmp/bare.json
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


def settings_from(ops: dict, asset: str, settings_type):
    """``settings_type`` with the values a Dagster run config's ``ops`` section gives ``asset``
    (the assets' config classes are derived from the same settings types)."""
    given = ops.get(asset, {}).get("config", {})
    return settings_type(**{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})


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


def run(
    base, ops: dict, tune_family: str | None = None, factor: float = 1.0, threads: int | None = None
) -> list[dict]:
    """The seven steps with the settings of ``ops`` (a Dagster run config's ``ops`` section:
    ``{}`` for the defaults, the smoke configuration's for a smoke run), on ``base`` (the fetched
    dataset) resampled ``factor`` times. ``tune_family`` fixes the tuned family (for scaling
    runs, so that every scale measures the same work whichever family wins the comparison)."""
    from dataclasses import replace

    from housing_assets import settings, steps
    from housing_assets.ml.split import SPLIT_COLUMNS, assign_split
    from housing_assets.steps.final_model import fit_final_model

    steps_run: list[dict] = []
    rows = 0
    threads = threads or settings.threads()  # as the `compute` resource decides

    @contextmanager
    def step(name: str):
        PeakRss.reset()
        start = time.perf_counter()
        yield
        steps_run.append(
            {
                "step": name,
                "rows": rows,
                "seconds": time.perf_counter() - start,
                "peak_rss_mb": PeakRss.peak_mb(),
            }
        )

    with step("raw_housing"):
        raw = steps.assemble_raw(base, [])
        if factor != 1:
            bigger = resample(raw.frame.drop(columns=SPLIT_COLUMNS), factor)
            raw = replace(raw, frame=assign_split(bigger))
        rows = len(raw.frame)
    with step("imputed_housing"):
        imputed = steps.impute(
            raw.frame,
            settings_from(ops, "imputed_housing", steps.ImputationSettings),
            threads=threads,
        )
    with step("geo_features"):
        geo = steps.add_geo_clusters(
            imputed, settings_from(ops, "geo_features", steps.GeoSettings), threads=threads
        )
    with step("train_test_split"):
        split = steps.split_hold_out(raw.frame, geo)
    with step("model_comparison"):
        comparison = steps.compare_models(
            split,
            settings_from(ops, "model_comparison", steps.ComparisonSettings),
            threads=threads,
        )
    with step("tuned_params"):
        if tune_family and tune_family != comparison.winner:
            comparison = replace(comparison, winner=tune_family, winner_params={})
        tuned = steps.tune_params(
            split,
            comparison,
            settings_from(ops, "tuned_params", steps.TuningSettings),
            threads=threads,
        )
    with step("registered_model"):  # the registry's I/O is not part of the ML work measured
        registration = settings_from(ops, "registered_model", steps.RegistrationSettings)
        fitted = fit_final_model(split, tuned, threads=threads, seeds=registration.seeds)
    steps_run.append(
        {
            "step": "result",
            "family": tuned.family,
            "k": geo.spec.n_clusters,
            "imputation": imputed.strategy,
            "test_metrics": fitted.test_metrics,
        }
    )
    return steps_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=["smoke", "default"], default="smoke")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--source", default=os.environ.get("HOUSING_SOURCE_URL"))
    parser.add_argument("--tune-family", help="tune this family whatever wins the comparison")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from housing_assets.defs.smoke import SMOKE_OPS_CONFIG
    from housing_assets.io.source import fetch

    ops = SMOKE_OPS_CONFIG if args.config == "smoke" else {}
    steps = run(fetch(args.source), ops, args.tune_family, args.scale)
    text = json.dumps(steps, indent=2, default=float)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
