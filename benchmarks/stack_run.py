"""The same job in the compose stack and outside it, alternated, step by step.

The stack is the shipped one (`docker compose up` with the dataset mounted, its real volumes,
MLflow server, PostgreSQL and idle services); each of its runs is submitted through the
webserver's GraphQL API, as the UI submits it, and runs in a container of its own. Outside,
the same job runs as `dagster job execute` in one fresh project folder (SQLite MLflow store,
local files). Per run: the wall (stack: submitted -> success, which includes the queue and the
container's start; outside: the process), the run's own start -> end, and each step's time
from the event log, so the steps where the stack loses time stand out:

    .venv/bin/python -m benchmarks.stack_run --job housing_pipeline_job --pairs 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import requests

from benchmarks.calibration import calibrate
from benchmarks.report import add_out_argument, save_result
from housing_assets_testkit import default_source, execute_job_cli, fresh_process_env, wait_for
from housing_assets_testkit.stack import run_container, running_stack, stack_environment

RUN_STATS = """query($runId: ID!) { runOrError(runId: $runId) { ... on Run {
  status startTime endTime stepStats { stepKey startTime endTime } } } }"""


def stack_run(stack, client, auth, job: str) -> dict:
    """One run submitted through GraphQL; its times from the webserver."""
    start = time.time()
    run_id = client.submit_job_execution(job)
    wait_for(lambda: run_container(run_id), 300, "the run's container", poll_s=0.5)
    created = time.time()
    status = wait_for(
        lambda: (s := client.get_run_status(run_id).value) in ("SUCCESS", "FAILURE") and s,
        3600,
        f"the stack's {job} run",
        poll_s=1,
    )
    ended = time.time()
    if status != "SUCCESS":
        raise RuntimeError(f"the stack's run {run_id} ended {status}")
    run = stack.graphql(auth, RUN_STATS, {"runId": run_id})["runOrError"]
    return {
        "wall_s": ended - start,
        "submitted_to_container_s": created - start,
        "submitted_to_start_s": run["startTime"] - start,
        "run_s": run["endTime"] - run["startTime"],
        "steps_s": {s["stepKey"]: s["endTime"] - s["startTime"] for s in run["stepStats"]},
    }


def outside_run(env: dict[str, str], job: str) -> dict:
    """One `dagster job execute` in the outside project; its times from its event log."""
    from benchmarks.run import probe_run

    start = time.perf_counter()
    execute_job_cli(job, env, check=True, timeout=3600)
    wall = time.perf_counter() - start
    probe = probe_run(env)
    return {"wall_s": wall, "steps_s": probe["steps_s"]}


def summary(stack_runs: list[dict], outside_runs: list[dict]) -> dict:
    def median(runs: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    steps = {}
    for step in outside_runs[0]["steps_s"]:
        inside = statistics.median(r["steps_s"].get(step, 0.0) for r in stack_runs)
        outside = statistics.median(r["steps_s"][step] for r in outside_runs)
        steps[step] = {"stack_s": inside, "outside_s": outside, "extra_s": inside - outside}
    return {
        "stack_wall_s": median(stack_runs, "wall_s"),
        "stack_run_s": median(stack_runs, "run_s"),
        "stack_submitted_to_start_s": median(stack_runs, "submitted_to_start_s"),
        "outside_wall_s": median(outside_runs, "wall_s"),
        "ratio_wall": median(stack_runs, "wall_s") / median(outside_runs, "wall_s"),
        "steps": steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--job", default="housing_pipeline_job")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--dataset", type=Path, help="housing.tgz (default: the shared copy)")
    add_out_argument(parser)
    args = parser.parse_args()
    from dagster_graphql import DagsterGraphQLClient

    source = default_source()
    dataset = args.dataset or Path(source.removeprefix("file://"))
    calibration = calibrate()
    stack_runs, outside_runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "stack").mkdir()
        env = stack_environment(tmp / "stack", dataset)
        outside_env = fresh_process_env(tmp / "outside", source)
        with running_stack(env, project="housing-bench") as stack:
            stack.run("up", "-d", "--build", timeout=1800)
            wait_for(
                lambda: all(h == "healthy" for h in stack.health().values()),
                600,
                "every service to be healthy",
                poll_s=2,
            )
            auth = requests.auth.HTTPBasicAuth("operator", stack.secret("ui_password"))
            client = DagsterGraphQLClient(
                "127.0.0.1", port_number=stack.ports["DAGSTER_PORT"], auth=auth
            )
            for pair in range(args.pairs):
                order = ["stack", "outside"] if pair % 2 == 0 else ["outside", "stack"]
                for side in order:
                    if side == "stack":
                        stack_runs.append(stack_run(stack, client, auth, args.job))
                    else:
                        outside_runs.append(outside_run(outside_env, args.job))
                    print(f"pair {pair + 1}: {side} {_last(stack_runs, outside_runs, side)}")
    result = {
        "benchmark": "stack_run",
        "job": args.job,
        "pairs": args.pairs,
        "calibration": calibration,
        "stack_runs": stack_runs,
        "outside_runs": outside_runs,
        **summary(stack_runs, outside_runs),
    }
    save_result("stack_run", result, args.out)


def _last(stack_runs: list[dict], outside_runs: list[dict], side: str) -> str:
    run = (stack_runs if side == "stack" else outside_runs)[-1]
    return f"{run['wall_s']:.1f} s"


if __name__ == "__main__":
    main()
