"""The warm code server, `housing-code-server` (housing_assets/platform/code_server.py): an
opt-in replacement for Dagster's `dagster api grpc` that a deployment chooses by running it (the
compose stack's code service does; `make dev` and the code location itself do not use it).

Runs launched through it (the path of the UI, the sensor and schedules) each start in a process
forked from the server's preloaded forkserver, not in a freshly spawned interpreter, and run
to the end, one after another from the same forkserver. It relies on Dagster internals, pinned
by the first test: it fails when Dagster changes under the server. How much time the server
saves is measured by benchmarks/run.py (see docs/benchmark-results.md), not here."""

import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from housing_assets_testkit import (
    launch_job_cli,
    launch_runs_at_once,
    wait_for,
    warm_code_server,
)


def test_the_dagster_internals_it_relies_on_are_still_there():
    """The server swaps the multiprocessing context Dagster's servicer starts runs with, and
    runs Dagster's own `dagster api grpc` command with its servicer class in place."""
    import dagster._grpc.server as grpc_server
    from dagster._cli.api import grpc_command

    from housing_assets.platform.code_server import warm_api_server_class

    servicer = inspect.getsource(grpc_server.DagsterApiServer)
    assert 'self._mp_ctx = multiprocessing.get_context("spawn")' in servicer
    assert "self._mp_ctx.Process(" in servicer  # how a run's process is started
    # The command imports the servicer class when called, so replacing the module's attribute
    # before calling it is enough.
    command = inspect.getsource(grpc_command.callback)
    assert "from dagster._grpc.server import DagsterApiServer" in command
    assert "DagsterApiServer(" in command
    assert issubclass(warm_api_server_class(), grpc_server.DagsterApiServer)


_FORK_FROM_WARM_CONTEXT = """
import logging, pathlib, sys
from housing_assets.platform import code_server
import probe_target

code_server.WARM_MODULES = [sys.argv[1]]
logging.basicConfig(level=logging.INFO)
context = code_server.warm_context(logging.getLogger("test"))
child = context.Process(target=probe_target.report, args=(sys.argv[2],))
child.start()
child.join()
print(context.get_start_method())
"""


def _fork_from_warm_context(tmp_path: Path, preload: str) -> tuple[str, str, str]:
    """In a fresh interpreter (the forkserver is process-wide): `warm_context` preloading
    ``preload`` (a module in ``tmp_path``), then one child. Returns the start method, whether
    the child found ``warm_marker`` already imported, and the log."""
    (tmp_path / "warm_marker.py").write_text("MARK = 1\n")
    (tmp_path / "broken_marker.py").write_text("raise RuntimeError('broken on purpose')\n")
    (tmp_path / "probe_target.py").write_text(
        textwrap.dedent(
            """
            import pathlib, sys

            def report(path):
                pathlib.Path(path).write_text(str("warm_marker" in sys.modules))
            """
        )
    )
    found = tmp_path / "found.txt"
    done = subprocess.run(
        [sys.executable, "-c", _FORK_FROM_WARM_CONTEXT, preload, str(found)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip(), found.read_text(), done.stderr


def test_children_of_the_warm_context_find_the_preloaded_modules(tmp_path):
    method, found, log = _fork_from_warm_context(tmp_path, "warm_marker")
    assert (method, found) == ("forkserver", "True")
    assert "Runs start from a forkserver" in log


def test_a_forkserver_that_cannot_start_falls_back_to_spawn(tmp_path):
    method, found, log = _fork_from_warm_context(tmp_path, "broken_marker")
    assert (method, found) == ("spawn", "False")
    assert "Runs will start in a spawned interpreter" in log


@pytest.mark.e2e
def test_launched_runs_start_in_the_warm_forkserver_and_succeed(isolated_env, tmp_path):
    from dagster import DagsterInstance, DagsterRunStatus
    from mlflow import MlflowClient

    from housing_assets.platform.run_liveness import WORKER_TAG, RunWorker

    launch_runs_at_once(isolated_env)  # no daemon here: the launch goes straight to the server
    instance = DagsterInstance.get()
    finished = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
    with warm_code_server(isolated_env, tmp_path) as workspace:
        # The full smoke pipeline, then a retune from its materialized assets: the second run
        # is forked from the same forkserver after the first one's process is gone.
        for job in ("housing_smoke_job", "retune_smoke_job"):
            known = {r.run_id for r in instance.get_runs()}
            launched = launch_job_cli(job, isolated_env, workspace)
            assert launched.returncode == 0, launched.stderr[-3000:]
            run = wait_for(
                lambda known=known: next(
                    (r for r in instance.get_runs() if r.run_id not in known), None
                ),
                60,
                f"the {job} run",
            )

            def worker(run_id=run.run_id):
                return RunWorker.from_tag(instance.get_run_by_id(run_id).tags.get(WORKER_TAG))

            pid = wait_for(worker, 120, f"{job}'s worker").pid
            # A forked child keeps its parent's command line: the forkserver's, not the
            # `multiprocessing.spawn` one of Dagster's stock code server.
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            assert "multiprocessing.forkserver" in command, command

            done = wait_for(
                lambda run_id=run.run_id: (
                    r if (r := instance.get_run_by_id(run_id)).status in finished else None
                ),
                1800,  # a hang guard, not a speed target: minutes on a busy 2-core machine
                f"{job} to finish",
                poll_s=1,
            )
            assert done.status == DagsterRunStatus.SUCCESS, (
                tmp_path / "code-server.log"
            ).read_text()[-3000:]

    tracking = f"sqlite:///{Path(isolated_env['HOUSING_DATA_DIR']) / 'mlflow' / 'mlflow.db'}"
    versions = MlflowClient(tracking, tracking).search_model_versions("name='housing_price_model'")
    assert len(versions) == 2  # each run registered its model
