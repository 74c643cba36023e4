"""Cost as data grows: after 0, 100 and 1,000 accepted batches of 200 rows, the retraining
sensor's tick, and the retrain it requests (wall time and peak memory).

One project in a temporary folder, driven as in production: the quick pipeline
(``housing_smoke_job``) runs once, so that stored choices and a champion exist; then batches
of new real rows are dropped into the landing folder and accepted by real sensor ticks
(``dagster.build_sensor_context`` + ``new_batch_sensor`` with the project's resources). At each
level, ``--repeats`` more ticks are timed, and the run the last one requested (its job and run
config, exactly) is executed with ``dagster job execute`` under ``/usr/bin/time`` for its peak
resident memory. Landing → registered is that tick plus that run; the model server then picks
the new champion up at its next poll (``retrain_latency`` measures the whole path).

    .venv/bin/python -m benchmarks.growth                      # 0, 100, 1000 batches
    .venv/bin/python -m benchmarks.growth --levels 0 20 --out /tmp

Prints the result and saves ``growth.json`` into ``--out`` (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.calibration import calibrate as calibrate_machine
from benchmarks.report import RESULTS_DIR, save_result
from benchmarks.sensor_tick import DEFAULT_SOURCE, Zone, code_version, new_batches

REPO = Path(__file__).resolve().parent.parent
DAGSTER = str(Path(sys.executable).parent / "dagster")


def project_env(root: Path, source: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DAGSTER_HOME": str(root / "cli_home"),
        "HOUSING_DATA_DIR": str(root / "data"),
        "HOUSING_LANDING_URL": str(root / "landing"),
        "HOUSING_LANDING_SETTLE_S": "0",
        "HOUSING_SOURCE_URL": str(source),
        "WANDB_MODE": "offline",
    }
    for name in ("HOUSING_GCS_BUCKET", "HOUSING_DEPLOYMENT", "STORAGE_EMULATOR_HOST"):
        env.pop(name, None)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "WANDB_API_KEY"):
        env.pop(name, None)
    (root / "cli_home").mkdir(parents=True)
    shutil.copy(REPO / "dagster.yaml", root / "cli_home" / "dagster.yaml")
    return env


def execute(job: str, run_config: dict, env: dict[str, str], where: Path) -> dict:
    """``dagster job execute`` of ``job`` with ``run_config``: wall seconds, peak RSS (MB)."""
    config = where / f"{job}-{time.time_ns()}.yaml"
    config.write_text(yaml.safe_dump(run_config or {}))
    command = ["/usr/bin/time", "-v", DAGSTER, "job", "execute", "-m", "housing_assets.definitions"]
    start = time.perf_counter()
    done = subprocess.run(
        [*command, "-j", job, "-c", str(config)], env=env, cwd=REPO, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{job} failed:\n{done.stderr[-4000:]}")
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return {"job": job, "wall_s": round(wall, 2), "peak_rss_mb": round(peak_kb / 1024, 1)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="housing.tgz")
    parser.add_argument("--levels", type=int, nargs="+", default=[0, 100, 1000])
    parser.add_argument("--rows", type=int, default=200, help="rows per batch")
    parser.add_argument("--repeats", type=int, default=3, help="timed ticks per level")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if not args.source.is_file():
        parser.error(f"{args.source}: no such file (the real dataset, housing.tgz)")

    from dagster import RunRequest

    from housing_assets.ml.parsing import parse_payload

    base = parse_payload(args.source.read_bytes(), args.source.name)
    batches = new_batches(base, args.rows)
    report: dict = {
        "benchmark": "growth",
        "code": code_version(),
        "python": sys.version.split()[0],
        "machine": platform.node(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "rows_per_batch": args.rows,
        "base_rows": len(base),
        "calibration": calibrate_machine(),
        "levels": {},
    }
    with tempfile.TemporaryDirectory(prefix="growth-") as tmp:
        root = Path(tmp)
        zone = Zone(root, args.source, tuned=None)
        env = project_env(root, args.source)
        report["bootstrap"] = execute("housing_smoke_job", {}, env, root)
        for level in sorted(args.levels):
            while zone.accepted < level:
                zone.tick(next(batches))
            times, request = [], None
            for _ in range(args.repeats):
                elapsed, request = zone.evaluate(next(batches))
                times.append(elapsed)
            if not isinstance(request, RunRequest):
                raise RuntimeError(f"no run requested at {zone.accepted} batches: {request}")
            retrain = execute(request.job_name, request.run_config, env, root)
            rows = len(base) + zone.accepted * args.rows
            tick_s = statistics.median(times)
            report["levels"][str(level)] = {
                "accepted_batches": zone.accepted,
                "raw_rows": rows,
                "tick_s": [round(t, 4) for t in times],
                "median_tick_s": round(tick_s, 4),
                "retrain": retrain,
                "retrain_s_per_1k_rows": round(retrain["wall_s"] / rows * 1000, 3),
                "landing_to_registered_s": round(tick_s + retrain["wall_s"], 2),
            }
            print(json.dumps({level: report["levels"][str(level)]}), flush=True)
    report["calibration_after"] = calibrate_machine()
    print(json.dumps(report, indent=2))
    save_result("growth", report, args.out)
    return report


if __name__ == "__main__":
    main()
