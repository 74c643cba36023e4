"""Landing -> served: how long a new batch takes to reach the model server.

A fresh project is trained once (``--config``: default or smoke), then the real pieces run as
deployed: ``housing-code-server`` (the code location, whose runs start warm; ``--code-server
stock`` for Dagster's own, as `make dev` runs it), ``dagster-daemon`` (the retraining sensor)
and ``housing-serve`` following ``champion``. A batch of plausible new rows is renamed into
the landing folder (the documented write-then-rename, taken at the next tick) and the clock
runs until ``/invocations`` answers with the new version. The report splits the time into
phases and carries a calibration:

    .venv/bin/python -m benchmarks.retrain_latency --config default
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from benchmarks.calibration import calibrate
from benchmarks.report import add_out_argument, save_result
from housing_assets_testkit import (
    REPO_ROOT,
    background_server,
    default_source,
    execute_job_cli,
    free_port,
    fresh_process_env,
    wait_for,
    warm_code_server,
)


def new_rows(source: str, n: int = 200, seed: int = 1):
    """Real rows with a small jitter, so they are new but plausible (no drift)."""
    from housing_assets.io.source import fetch
    from housing_assets.ml.parsing import parse_payload

    raw = parse_payload(fetch(source).payload, source)
    rng = np.random.default_rng(seed)
    rows = raw.dropna().sample(n, random_state=seed).reset_index(drop=True)
    rows["median_income"] = (rows["median_income"] * rng.uniform(0.98, 1.02, n)).round(4)
    return rows


def served_version(url: str, body: bytes) -> str | None:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.headers.get("x-model-version")
    except OSError:
        return None


def sensor_ticks(instance) -> list:
    """The new-batch sensor's ticks in ``instance``, newest first."""
    states = [
        s for s in instance.all_instigator_state() if s.origin.instigator_name == "new_batch_sensor"
    ]
    return [
        tick
        for state in states
        for tick in instance.get_ticks(state.instigator_origin_id, state.selector_id)
    ]


def sensor_has_ticked(dagster_home: str) -> bool:
    from dagster import DagsterInstance

    with DagsterInstance.from_config(dagster_home) as instance:
        return bool(sensor_ticks(instance))


def requesting_tick(instance, run_id: str):
    """The new-batch sensor's tick that requested ``run_id``."""
    return next(t for t in sensor_ticks(instance) if run_id in t.run_ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=["default", "smoke"], default="default")
    parser.add_argument("--source", default=default_source())
    parser.add_argument("--sensor-interval-s", type=float, default=5.0)
    parser.add_argument("--serve-poll-s", type=float, default=1.0)
    parser.add_argument(
        "--code-server",
        choices=["warm", "stock"],
        default="warm",
        help="warm: housing-code-server, as the compose stack runs it (default); stock: the "
        "daemon starts Dagster's own code server from workspace.yaml, as `make dev` does",
    )
    add_out_argument(parser)
    args = parser.parse_args()

    from dagster import DagsterInstance, RunsFilter

    report: dict = {"config": args.config, "calibration": calibrate()}
    with tempfile.TemporaryDirectory() as tmp:
        landing = Path(tmp, "landing")
        landing.mkdir()
        extra = {
            "HOUSING_LANDING_URL": str(landing),
            "HOUSING_SENSOR_INTERVAL_S": str(int(args.sensor_interval_s)),
        }
        if args.config == "smoke":
            extra["HOUSING_RETRAIN_CONFIG"] = str(REPO_ROOT / "configs" / "smoke.yaml")
        env = fresh_process_env(tmp, args.source, **extra)
        job = "housing_pipeline_job" if args.config == "default" else "housing_smoke_job"
        start = time.perf_counter()
        execute_job_cli(job, env, check=True, timeout=3600)
        report["first_run_s"] = round(time.perf_counter() - start, 1)

        port = free_port()
        url = f"http://127.0.0.1:{port}/invocations"
        rows = new_rows(args.source)
        body = json.dumps(
            {"dataframe_split": rows.drop(columns="median_house_value").head(3).to_dict("split")}
        ).encode()
        serve = [
            str(Path(sys.executable).parent / "housing-serve"),
            *("--port", str(port), "--poll-s", str(args.serve_poll_s)),
        ]
        code_servers = contextlib.ExitStack()
        workspace = (
            code_servers.enter_context(warm_code_server(env, tmp))
            if args.code_server == "warm"
            else REPO_ROOT / "workspace.yaml"  # the daemon starts Dagster's own code server
        )
        daemon = [
            str(Path(sys.executable).parent / "dagster-daemon"),
            "run",
            "-w",
            str(workspace),
        ]
        with (
            code_servers,
            background_server(serve, f"http://127.0.0.1:{port}/ping", env=env),
            subprocess.Popen(
                daemon,
                cwd=REPO_ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=open(Path(tmp, "daemon.log"), "w"),  # noqa: SIM115
                start_new_session=True,
            ) as proc,
        ):
            try:
                assert served_version(url, body) == "1"
                # As deployed, the daemon is already up: land the batch after the sensor's
                # first tick (daemon start-up, its code server's imports) has passed.
                wait_for(
                    lambda: sensor_has_ticked(env["DAGSTER_HOME"]),
                    300,
                    "the sensor's first tick",
                    poll_s=0.5,
                )
                # The documented protocol: write a hidden partial file, then `mv` it. (A rename
                # in the writing process within one filesystem clock tick, ~4 ms here, looks
                # like an unfinished write and waits the settle time.)
                rows.to_csv(landing / ".batch-001.csv.partial", index=False)
                subprocess.run(
                    ["mv", landing / ".batch-001.csv.partial", landing / "batch-001.csv"],
                    check=True,
                )
                landed = time.time()
                wait_for(lambda: served_version(url, body) == "2", 1800, "version 2 served")
                report["landing_to_served_s"] = round(time.time() - landed, 1)
                with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
                    # served before the run's end event is written: wait for its record
                    (run,) = wait_for(
                        lambda: [
                            r
                            for r in instance.get_run_records(RunsFilter(job_name="retrain_job"))
                            if r.end_time
                        ],
                        120,
                        "the retrain run's end",
                    )
                    tick = requesting_tick(instance, run.dagster_run.run_id)
                    report["sensor_ticks"] = [
                        f"{t.timestamp - landed:+.1f} s {t.status.value} {t.skip_reason or ''}"
                        for t in sorted(sensor_ticks(instance), key=lambda t: t.timestamp)
                    ]
                    report["retrain_job"] = {
                        "landing_to_tick_start_s": round(tick.timestamp - landed, 1),
                        "tick_s": round(tick.end_timestamp - tick.timestamp, 1),
                        "landing_to_run_created_s": round(
                            run.create_timestamp.timestamp() - landed, 1
                        ),
                        "run_created_to_started_s": round(
                            run.start_time - run.create_timestamp.timestamp(), 1
                        ),
                        "run_wall_s": round(run.end_time - run.start_time, 1),
                        "steps_s": {
                            s.step_key: round(s.end_time - s.start_time, 1)
                            for s in instance.get_run_step_stats(run.dagster_run.run_id)
                        },
                        "run_end_to_served_s": round(
                            landed + report["landing_to_served_s"] - run.end_time, 1
                        ),
                    }
            finally:
                os.killpg(proc.pid, 15)
    report["code_server"] = args.code_server
    report["sensor_interval_s"] = args.sensor_interval_s
    report["serve_poll_s"] = args.serve_poll_s
    print(json.dumps(report, indent=2))
    save_result("retrain_latency", report, args.out)


if __name__ == "__main__":
    main()
