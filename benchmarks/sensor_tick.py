"""How long one tick of the retraining sensor takes with a new batch, as accepted data grows.

Two landing zones side by side, each in a temporary folder with a real Dagster instance and the
project's real resources (``housing_assets.resources.resource_values`` for this environment,
pointed at the temporary folder and the real dataset): zone A has no accepted batch, zone B is
first filled with ``--batches`` batches of ``--rows`` new rows, each accepted by a real tick.
Then both are measured in alternation (A B, B A, ...: drift on a shared machine favours neither)
with one new ``--rows``-row file a tick; the time is the sensor's evaluation
(``dagster.build_sensor_context`` + the sensor), which accepts the file and requests the run.
A stored ``tuned_params`` makes each tick read the stored choices, as in production.

    .venv/bin/python -m benchmarks.sensor_tick                  # 0 vs 200 batches of 200 rows
    .venv/bin/python -m benchmarks.sensor_tick --batches 50 --repeats 3 --out /tmp

Prints the result and saves ``sensor_tick.json`` into ``--out`` (default benchmarks/results,
which renders docs/benchmark-results.md again). Besides the results page, only the project and
its own dependencies: nothing from the test kit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from benchmarks.calibration import calibrate as calibrate_machine
from benchmarks.report import RESULTS_DIR, save_result

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parent.parent / "shared" / "data" / "housing.tgz"


@contextmanager
def environment(**values: str):
    """Environment variables set for the block (resource_values reads the environment)."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class Zone:
    """One landing zone with its instance, resources and sensor cursor."""

    def __init__(self, root: Path, source: Path, tuned):
        from dagster import AssetKey, DagsterInstance, build_output_context

        from housing_assets.resources import resource_values

        self.root = root
        self.landing = root / "landing"
        self.landing.mkdir(parents=True)
        for name in ("HOUSING_GCS_BUCKET", "HOUSING_DEPLOYMENT", "STORAGE_EMULATOR_HOST"):
            os.environ.pop(name, None)
        # The resources read HOUSING_SOURCE_URL when a context is built: set for the process.
        os.environ["HOUSING_SOURCE_URL"] = str(source)
        with environment(
            HOUSING_DATA_DIR=str(root / "data"),
            HOUSING_LANDING_URL=str(self.landing),
            HOUSING_LANDING_SETTLE_S="0",
        ):
            resources = resource_values()
        self.resources = {k: resources[k] for k in ("housing_source", "io_manager")}
        (root / "dagster_home").mkdir()
        self.instance = DagsterInstance.local_temp(str(root / "dagster_home"))
        self.cursor: str | None = None
        self.accepted = 0
        if tuned is not None:  # stored as a run stores it, through the IO manager
            self.resources["io_manager"].handle_output(
                build_output_context(asset_key=AssetKey("tuned_params")), tuned
            )

    def evaluate(self, batch) -> tuple[float, object]:
        """Drop ``batch`` (a DataFrame) as a new file, evaluate the sensor once: its seconds
        and what it returned (a ``RunRequest`` when it accepted the file)."""
        from dagster import RunRequest, build_sensor_context

        from housing_assets.defs.sensors import new_batch_sensor

        name = f"batch-{self.accepted:05d}-{time.time_ns()}.csv"
        batch.to_csv(self.landing / name, index=False)
        start = time.perf_counter()
        with build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources=self.resources
        ) as context:
            result = new_batch_sensor(context)
            self.cursor = context.cursor
        elapsed = time.perf_counter() - start
        self.accepted += isinstance(result, RunRequest)
        return elapsed, result

    def tick(self, batch, expect_run: bool = True) -> float:
        """:meth:`evaluate`, checking that a run was (or was not) requested; its seconds."""
        from dagster import RunRequest

        elapsed, result = self.evaluate(batch)
        if isinstance(result, RunRequest) != expect_run:
            raise RuntimeError(f"unexpected outcome of a tick: {result}")
        return elapsed


def new_batches(base, rows: int):
    """Endless batches of ``rows`` rows no batch and no base row has: real rows, each batch's
    median_house_value shifted by its own amount."""
    import numpy as np

    rng = np.random.default_rng(0)
    complete = base.dropna().reset_index(drop=True)
    number = 0
    while True:
        number += 1
        picked = complete.iloc[rng.choice(len(complete), rows, replace=False)]
        yield picked.assign(median_house_value=picked["median_house_value"] + number * 0.5)


def calibrate(source: Path) -> float:
    """Seconds to parse the base dataset (fixed pandas work): the machine's speed right now."""
    from housing_assets.ml.parsing import parse_payload

    payload = source.read_bytes()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        parse_payload(payload, source.name)
        times.append(time.perf_counter() - start)
    return min(times)


def tuned_params():
    """A stored tuned_params with the features it was tuned on (as the tuning step stores it)."""
    import pandas as pd

    from housing_assets.datasets import TunedParams
    from housing_assets.ml.pipeline import FeatureSpec

    fields = TunedParams.__dataclass_fields__
    extra = {"spec": FeatureSpec("knn", 15, random_state=42)} if "spec" in fields else {}
    return TunedParams(
        family="boosting",
        params={"learning_rate": 0.05},
        metric="wmape",
        cv_metrics={"wmape": 12.0},
        trials=pd.DataFrame({"number": [0], "value": [12.0]}),
        **extra,
    )


def code_version() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(HERE), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="housing.tgz")
    parser.add_argument("--batches", type=int, default=200, help="batches accepted in zone B")
    parser.add_argument("--rows", type=int, default=200, help="rows per batch")
    parser.add_argument("--repeats", type=int, default=7, help="measured ticks per zone")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if not args.source.is_file():
        parser.error(f"{args.source}: no such file (the real dataset, housing.tgz)")

    from housing_assets.ml.parsing import parse_payload

    base = parse_payload(args.source.read_bytes(), args.source.name)
    batches = new_batches(base, args.rows)
    report: dict = {
        "benchmark": "sensor_tick",
        "code": code_version(),
        "python": sys.version.split()[0],
        "machine": platform.node(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "batches": args.batches,
        "rows_per_batch": args.rows,
        "repeats": args.repeats,
        "calibration": calibrate_machine(),
        "calibration_before_s": round(calibrate(args.source), 4),
    }
    with tempfile.TemporaryDirectory(prefix="sensor-tick-") as tmp:
        tuned = tuned_params()
        empty, full = (
            Zone(Path(tmp, "a"), args.source, tuned),
            Zone(Path(tmp, "b"), args.source, tuned),
        )
        fill_times = []
        fill_start = time.perf_counter()
        for _ in range(args.batches):
            fill_times.append(full.tick(next(batches)))
        report["fill_s"] = round(time.perf_counter() - fill_start, 2)
        step = max(1, args.batches // 8)
        report["fill_tick_s"] = {  # the tick that accepted batch number n (n - 1 before it)
            str(n + 1): round(fill_times[n], 4) for n in range(0, args.batches, step)
        }
        # Zone A's first tick with a file reads and indexes the base dataset (once per base
        # content): done here with base rows only, which are quarantined, so A stays at zero.
        report["first_tick_s"] = round(empty.tick(base.iloc[: args.rows], expect_run=False), 4)
        measured: dict[str, list[float]] = {"0": [], str(args.batches): []}
        for repeat in range(args.repeats):
            zones = [("0", empty), (str(args.batches), full)]
            for label, zone in zones if repeat % 2 == 0 else zones[::-1]:
                measured[label].append(zone.tick(next(batches)))
        index = full.landing / "index"
        report["index_bytes"] = (
            sum(p.stat().st_size for p in index.iterdir()) if index.is_dir() else 0
        )
    report["calibration_after_s"] = round(calibrate(args.source), 4)
    medians = {label: statistics.median(times) for label, times in measured.items()}
    report["tick_s"] = {label: [round(t, 4) for t in times] for label, times in measured.items()}
    report["median_tick_s"] = {label: round(m, 4) for label, m in medians.items()}
    report["ratio_after_vs_before"] = round(medians[str(args.batches)] / medians["0"], 3)
    print(json.dumps(report, indent=2))
    save_result("sensor_tick", report, args.out)
    return report


if __name__ == "__main__":
    main()
