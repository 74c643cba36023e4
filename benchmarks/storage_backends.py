"""Smoke configuration on local disk vs on a GCS bucket (local GCS server), measured in one run.

    .venv/bin/python benchmarks/storage_backends.py [--repeats 2] [--out benchmarks/results]

Each repeat runs the smoke job once per backend (alternating, fresh Dagster home, data folder
and bucket each time) as a user would: `dagster job execute` in a new process. Writes
storage_backends.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from common import DEFAULT_SOURCE, REPO, execute_job_cli, free_port, fresh_project_env


def run_smoke(extra_env: dict[str, str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = fresh_project_env(tmp, DEFAULT_SOURCE, **extra_env)
        start = time.perf_counter()
        execute_job_cli("housing_smoke_job", env, check=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()

    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ["STORAGE_EMULATOR_HOST"] = endpoint
    from housing_assets.io.gcs import storage_client

    times: dict[str, list[float]] = {"local": [], "gcs": []}
    try:
        for i in range(args.repeats):
            times["local"].append(run_smoke({}))
            bucket = f"bench-{i}-{port}"
            storage_client().create_bucket(bucket)
            times["gcs"].append(
                run_smoke(
                    {
                        "HOUSING_GCS_BUCKET": bucket,
                        "HOUSING_MLFLOW_ARTIFACTS": f"gs://{bucket}/mlflow",
                    }
                )
            )
    finally:
        server.stop()
    result = {
        backend: {"runs_s": t, "median_s": statistics.median(t)} for backend, t in times.items()
    }
    result["ratio_gcs_over_local"] = result["gcs"]["median_s"] / result["local"]["median_s"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "storage_backends.json").write_text(json.dumps(result, indent=2))
    print("| backend | runs (s) | median (s) |\n|---|---|---|")
    for backend in ("local", "gcs"):
        runs = ", ".join(f"{t:.1f}" for t in times[backend])
        print(f"| {backend} | {runs} | {result[backend]['median_s']:.1f} |")
    print(f"\nGCS / local = {result['ratio_gcs_over_local']:.2f}")


if __name__ == "__main__":
    main()
