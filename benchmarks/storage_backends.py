"""Smoke configuration on local disk vs on a GCS bucket (local GCS server), measured in one run.

    .venv/bin/python -m benchmarks.storage_backends [--repeats 2]

Each repeat runs the smoke job once per backend (alternating, fresh Dagster home, data folder
and bucket each time) as a user would: `dagster job execute` in a new process. Saves
storage_backends.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from benchmarks.calibration import calibrate
from benchmarks.report import add_out_argument, save_result
from housing_assets_testkit import default_source, execute_job_cli, free_port, fresh_project_env


def run_smoke(source: str, extra_env: dict[str, str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = fresh_project_env(tmp, source, **extra_env)
        start = time.perf_counter()
        execute_job_cli("housing_smoke_job", env, check=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--source", default=default_source())
    add_out_argument(parser)
    args = parser.parse_args()

    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ["STORAGE_EMULATOR_HOST"] = endpoint
    from housing_assets.io.gcs import storage_client

    calibration = calibrate()
    times: dict[str, list[float]] = {"local": [], "gcs": []}
    try:
        for i in range(args.repeats):
            times["local"].append(run_smoke(args.source, {}))
            bucket = f"bench-{i}-{port}"
            storage_client().create_bucket(bucket)
            times["gcs"].append(
                run_smoke(
                    args.source,
                    {
                        "HOUSING_GCS_BUCKET": bucket,
                        "HOUSING_MLFLOW_ARTIFACTS": f"gs://{bucket}/mlflow",
                    },
                )
            )
    finally:
        server.stop()
    result: dict = {"calibration": calibration}
    result |= {
        backend: {"runs_s": t, "median_s": statistics.median(t)} for backend, t in times.items()
    }
    result["ratio_gcs_over_local"] = result["gcs"]["median_s"] / result["local"]["median_s"]
    print("| backend | runs (s) | median (s) |\n|---|---|---|")
    for backend in ("local", "gcs"):
        runs = ", ".join(f"{t:.1f}" for t in times[backend])
        print(f"| {backend} | {runs} | {result[backend]['median_s']:.1f} |")
    print(f"\nGCS / local = {result['ratio_gcs_over_local']:.2f}")
    save_result("storage_backends", result, args.out)


if __name__ == "__main__":
    main()
