"""Latency of `housing-serve` for the champion: single rows and 100-row batches.

    .venv/bin/python -m benchmarks.serving_latency [--single 300] [--batch 100]
    .venv/bin/python -m benchmarks.serving_latency --alias challenger --interval 0.9
    .venv/bin/python -m benchmarks.serving_latency --shadow challenger

Starts the model server (`housing-serve`, on the project's MLflow store or MLFLOW_TRACKING_URI)
on 127.0.0.1, then sends a bounded, sequential load from this (second) process: --single
requests of one row and --batch requests of 100 rows (real rows, a NaN total_bedrooms among
them). Prints and saves p50/p99 in milliseconds. ``--alias`` serves another alias;
``--interval`` asks every request for prediction intervals at that level.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from benchmarks.calibration import calibrate
from benchmarks.report import add_out_argument, save_result
from housing_assets_testkit import background_server, default_source, free_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=300)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--source", default=default_source())
    parser.add_argument("--alias", default="champion", help="the alias to serve")
    parser.add_argument("--interval", type=float, help="ask for intervals at this level")
    parser.add_argument("--shadow", metavar="ALIAS", help="serve with --shadow ALIAS")
    add_out_argument(parser)
    args = parser.parse_args()

    from housing_assets.io.source import fetch
    from housing_assets.ml.parsing import parse_payload
    from housing_assets.ml.schema import FEATURE_COLUMNS

    rows = parse_payload(fetch(args.source).payload, args.source)[FEATURE_COLUMNS]
    rows = rows.sample(1000, random_state=0).reset_index(drop=True)
    rows.loc[0, "total_bedrooms"] = np.nan
    records = json.loads(rows.to_json(orient="records"))

    port = free_port()
    command = [
        str(Path(sys.executable).parent / "housing-serve"),
        *("--port", str(port), "--alias", args.alias),
        *(("--shadow", args.shadow, "--request-log", tempfile.mkdtemp()) if args.shadow else ()),
    ]
    params = {"params": {"interval": args.interval}} if args.interval else {}
    url = f"http://127.0.0.1:{port}/invocations"
    with background_server(command, f"http://127.0.0.1:{port}/ping", env=dict(os.environ)):

        def call(payload: bytes) -> float:
            request = urllib.request.Request(
                url, data=payload, headers={"Content-Type": "application/json"}
            )
            start = time.perf_counter()
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
            return (time.perf_counter() - start) * 1000

        single = [
            json.dumps({"dataframe_records": [records[i % 1000]], **params}).encode()
            for i in range(args.single)
        ]
        batch = [
            json.dumps(
                {"dataframe_records": records[(i * 100) % 900 : (i * 100) % 900 + 100], **params}
            ).encode()
            for i in range(args.batch)
        ]
        for payload in single[:10] + batch[:3]:  # warm-up
            call(payload)
        result: dict = {
            "alias": args.alias,
            "interval": args.interval,
            "shadow": args.shadow,
            "calibration": calibrate(),
        }
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
    save_result("serving_latency", result, args.out)


if __name__ == "__main__":
    main()
