"""Latency of `mlflow models serve` for the champion: single rows and 100-row batches.

    MLFLOW_TRACKING_URI=sqlite:///data/mlflow/mlflow.db .venv/bin/python benchmarks/serving_latency.py

Starts the server on 127.0.0.1, then sends a bounded, sequential load from this (second)
process: --single requests of one row and --batch requests of 100 rows (real rows, a NaN
total_bedrooms among them). Prints and writes p50/p99 in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
from common import DATASET, REPO, free_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=300)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--source", default=os.environ.get("HOUSING_SOURCE_URL", str(DATASET)))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from housing_assets.ml.schema import FEATURE_COLUMNS
    from housing_assets.ml.source import fetch, parse_payload

    rows = parse_payload(fetch(args.source).payload, args.source)[FEATURE_COLUMNS]
    rows = rows.sample(1000, random_state=0).reset_index(drop=True)
    rows.loc[0, "total_bedrooms"] = np.nan
    records = json.loads(rows.to_json(orient="records"))

    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "models",
            "serve",
            "-m",
            "models:/housing_price_model@champion",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "--env-manager",
            "local",
        ],
        env={
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/invocations"
    try:
        _wait(f"http://127.0.0.1:{port}/ping", server)

        def call(payload: bytes) -> float:
            request = urllib.request.Request(
                url, data=payload, headers={"Content-Type": "application/json"}
            )
            start = time.perf_counter()
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
            return (time.perf_counter() - start) * 1000

        single = [
            json.dumps({"dataframe_records": [records[i % 1000]]}).encode()
            for i in range(args.single)
        ]
        batch = [
            json.dumps(
                {"dataframe_records": records[(i * 100) % 900 : (i * 100) % 900 + 100]}
            ).encode()
            for i in range(args.batch)
        ]
        for payload in single[:10] + batch[:3]:  # warm-up
            call(payload)
        result = {}
        for name, payloads in (("single_row", single), ("rows_100", batch)):
            ms = np.array([call(p) for p in payloads])
            result[name] = {
                "requests": len(ms),
                "p50_ms": float(np.percentile(ms, 50)),
                "p99_ms": float(np.percentile(ms, 99)),
                "mean_ms": float(ms.mean()),
            }
            print(
                f"{name}: p50 {result[name]['p50_ms']:.1f} ms, p99 {result[name]['p99_ms']:.1f} ms"
                f" over {len(ms)} requests"
            )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serving_latency.json").write_text(json.dumps(result, indent=2))


def _wait(url: str, server: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("the model server exited")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(url)


if __name__ == "__main__":
    main()
