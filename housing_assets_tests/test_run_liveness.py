"""A killed run does not hold the queue: the worker is recorded, checked and failed.

This is opt-in platform code (housing_assets/platform/run_liveness.py) that the instance
config names, not the code location. The first tests pin the Dagster internals it relies on
(they fail when Dagster changes under it) and check the recorder and the launcher's health
check against real runs and processes; the e2e one kills a real CLI run under a real
dagster-daemon and watches the queued run behind it start.
"""

import http.server
import inspect
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from dagster import AssetExecutionContext, DagsterInstance, DagsterRunStatus, asset, materialize

from housing_assets.platform import run_liveness
from housing_assets.platform.run_liveness import (
    WORKER_TAG,
    CheckRunHealthResult,
    LivenessCheckingRunLauncher,
    RunWorker,
    RunWorkerRecorder,
    WorkerStatus,
    process_start_time,
)
from housing_assets_testkit import REPO_ROOT, fresh_project_env

BIN = Path(sys.executable).parent
MATERIALIZE_RAW_HOUSING = [
    *(str(BIN / "dagster"), "asset", "materialize", "-m", "housing_assets.definitions"),
    *("--select", "raw_housing"),
]


class _Run:
    """What the health check reads of a run: its tags."""

    def __init__(self, worker: RunWorker | None):
        self.tags = {WORKER_TAG: worker.to_tag()} if worker else {}


def _cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "dagster"), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _status(worker: RunWorker | None) -> WorkerStatus:
    return LivenessCheckingRunLauncher().check_run_worker_health(_Run(worker)).status


def test_the_dagster_internals_it_relies_on_are_still_there():
    """Run monitoring calls these on the instance's launcher; they are not public API."""
    from dagster._core.launcher import RunLauncher

    assert issubclass(LivenessCheckingRunLauncher, RunLauncher)
    assert isinstance(
        inspect.getattr_static(RunLauncher, "supports_check_run_worker_health"), property
    )
    assert list(inspect.signature(RunLauncher.check_run_worker_health).parameters) == [
        "self",
        "run",
    ]
    assert CheckRunHealthResult._fields[:2] == ("status", "msg")
    assert {"RUNNING", "FAILED"} <= set(WorkerStatus.__members__)
    assert LivenessCheckingRunLauncher().supports_check_run_worker_health


def _home_with_the_shipped_instance_config(tmp_path: Path, monkeypatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def test_the_shipped_instance_config_names_the_recorder_and_the_launcher(tmp_path, monkeypatch):
    settings = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())
    handlers = settings["python_logs"]["dagster_handler_config"]["handlers"]
    assert {h["class"] for h in handlers.values()} == {
        "housing_assets.platform.run_liveness.RunWorkerRecorder"
    }
    assert settings["run_launcher"]["module"] == "housing_assets.platform.run_liveness"
    assert settings["run_monitoring"]["enabled"]
    # The compose stack's runs are containers: dagster-docker's DockerRunLauncher (which also
    # removes old containers), whose own health check (the container's state) run monitoring
    # uses; no worker recorder there.
    from dagster_docker import DockerRunLauncher

    from housing_assets.platform.docker_launcher import PruningDockerRunLauncher

    stack = yaml.safe_load((REPO_ROOT / "deploy" / "dagster.yaml").read_text())
    assert (stack["run_launcher"]["module"], stack["run_launcher"]["class"]) == (
        "housing_assets.platform.docker_launcher",
        "PruningDockerRunLauncher",
    )
    assert issubclass(PruningDockerRunLauncher, DockerRunLauncher)
    assert stack["run_monitoring"]["enabled"] and "python_logs" not in stack
    _home_with_the_shipped_instance_config(tmp_path, monkeypatch)
    with DagsterInstance.get() as instance:
        assert isinstance(instance.run_launcher, LivenessCheckingRunLauncher)
        # Dagster builds the python_logs handlers (logging.config.dictConfig) for each run.
        assert any(isinstance(h, RunWorkerRecorder) for h in instance.get_handlers())


def test_a_run_records_its_worker_before_its_first_step(tmp_path, monkeypatch):
    """A real run on an instance configured as shipped: the recorder sees the run's RUN_START
    (Dagster's log record metadata) and tags the run before any step computes."""
    _home_with_the_shipped_instance_config(tmp_path, monkeypatch)
    seen = {}

    @asset
    def probe(context: AssetExecutionContext) -> int:
        run = context.instance.get_run_by_id(context.run_id)
        seen["worker"] = RunWorker.from_tag(run.tags.get(WORKER_TAG))
        return 1

    with DagsterInstance.get() as instance:
        result = materialize([probe], instance=instance)
        assert result.success
        assert seen["worker"] == RunWorker.this_process()
        tags = instance.get_run_by_id(result.run_id).tags
        assert RunWorker.from_tag(tags[WORKER_TAG]) == RunWorker.this_process()


def test_the_recorder_ignores_other_records_and_never_raises(monkeypatch, caplog):
    class _Event:
        event_type = run_liveness.DagsterEventType.RUN_START

    def record(**metadata):
        entry = logging.LogRecord("dagster", logging.DEBUG, __file__, 1, "message", None, None)
        if metadata:
            setattr(entry, run_liveness.DAGSTER_RECORD_METADATA, metadata)
        return entry

    opened = []
    monkeypatch.setattr(run_liveness, "_home_instance", lambda: opened.append(1))
    recorder = RunWorkerRecorder()
    recorder.emit(record())  # not from Dagster's log manager
    recorder.emit(record(run_id="r", dagster_event=None))  # a plain log line of a run
    assert opened == []
    monkeypatch.undo()  # the real _home_instance, with no instance to open
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with caplog.at_level(logging.WARNING, logger=run_liveness.__name__):
        recorder.emit(record(run_id="r", dagster_event=_Event()))
    assert "The worker of run r is not recorded: DAGSTER_HOME is not set" in caplog.text


def test_a_live_worker_is_running_and_a_killed_one_failed():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        worker = RunWorker(socket.gethostname(), child.pid, process_start_time(child.pid))
        assert worker.started is not None
        assert _status(worker) == WorkerStatus.RUNNING
        child.kill()
        # Not yet reaped: a zombie is gone too.
        time.sleep(0.2)
        assert _status(worker) == WorkerStatus.FAILED
        child.wait()
        assert _status(worker) == WorkerStatus.FAILED
        result = LivenessCheckingRunLauncher().check_run_worker_health(_Run(worker))
        assert f"pid {child.pid}" in result.msg and "gone" in result.msg
    finally:
        child.kill()
        child.wait()


def test_a_reused_pid_is_not_mistaken_for_the_worker():
    me = RunWorker.this_process()
    assert _status(me) == WorkerStatus.RUNNING
    # Same pid, another start time: the pid now belongs to another process.
    assert _status(RunWorker(me.host, me.pid, me.started - 1)) == WorkerStatus.FAILED


def test_workers_it_cannot_see_are_left_to_the_max_runtime():
    gone_pid = 2**22 + 17  # above the default pid_max: no such process
    assert _status(RunWorker("another-container", gone_pid, 1)) == WorkerStatus.RUNNING
    assert _status(None) == WorkerStatus.RUNNING
    assert RunWorker.from_tag("not json") is None


class _HangingHandler(http.server.BaseHTTPRequestHandler):
    """Starts a download and never finishes it, so the run stays in its first step."""

    release = threading.Event()
    requests = 0

    def do_GET(self):  # noqa: N802 (http.server's name)
        type(self).requests += 1
        self.send_response(200)
        self.send_header("Content-Length", "1000000")
        self.end_headers()
        self.wfile.write(b"\x1f\x8b")
        self.wfile.flush()
        self.release.wait(300)

    def log_message(self, format, *args):  # noqa: A002
        pass


@pytest.mark.e2e
def test_a_killed_cli_run_is_failed_and_the_queue_moves_on(tmp_path, monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HangingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/housing.tgz"
    env = {**os.environ, **fresh_project_env(tmp_path, url)}
    instance_yaml = Path(env["DAGSTER_HOME"], "dagster.yaml")
    settings = yaml.safe_load(instance_yaml.read_text())
    settings["run_monitoring"]["poll_interval_seconds"] = 2  # the shipped 15 s, shortened
    instance_yaml.write_text(yaml.safe_dump(settings))
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    # Create the sqlite storages once, before three processes open them at the same moment
    # (they can race creating the schedule storage's alembic_version table).
    DagsterInstance.get().dispose()

    def spawn(args, log):
        return subprocess.Popen(
            args,
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / log, "w"),  # noqa: SIM115 (lives as long as the process)
            start_new_session=True,
        )

    daemon = spawn([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], "daemon.log")
    cli = spawn(MATERIALIZE_RAW_HOUSING, "cli.log")
    try:
        with DagsterInstance.get() as instance:

            def runs():
                return {r.run_id: r for r in instance.get_runs()}

            def wait_for(predicate, what, timeout_s=120.0):
                deadline = time.monotonic() + timeout_s
                while time.monotonic() < deadline:
                    if value := predicate():
                        return value
                    time.sleep(0.5)
                log = (tmp_path / "daemon.log").read_text()[-3000:]
                raise AssertionError(f"timed out waiting for {what}; daemon log:\n{log}")

            # 1. The CLI run is inside its first step (the download hangs) and says where it runs.
            cli_run = wait_for(
                lambda: next(
                    (
                        r
                        for r in runs().values()
                        if WORKER_TAG in r.tags and _HangingHandler.requests
                    ),
                    None,
                ),
                "the CLI run to start its download",
            )
            worker = RunWorker.from_tag(cli_run.tags[WORKER_TAG])
            assert worker.pid == cli.pid and cli_run.status == DagsterRunStatus.STARTED

            # 2. A second run is queued behind it (one run at a time) and stays queued.
            launch = _cli(["job", "launch", "-w", "workspace.yaml", "-j", "housing_smoke_job"], env)
            assert launch.returncode == 0, launch.stderr[-3000:]
            (queued_id,) = set(runs()) - {cli_run.run_id}
            time.sleep(6)  # three monitoring polls and queue ticks
            assert runs()[queued_id].status == DagsterRunStatus.QUEUED
            assert runs()[cli_run.run_id].status == DagsterRunStatus.STARTED

            # 3. Kill the CLI run's process: run monitoring fails it, the queued run starts.
            os.killpg(cli.pid, signal.SIGKILL)
            cli.wait()
            wait_for(
                lambda: runs()[cli_run.run_id].status == DagsterRunStatus.FAILURE,
                "the killed run to be marked failed",
                60,
            )
            wait_for(
                lambda: runs()[queued_id].status != DagsterRunStatus.QUEUED,
                "the queued run to leave the queue",
                60,
            )
            messages = [
                e.message
                for e in instance.all_logs(cli_run.run_id)
                if e.message and "gone" in e.message
            ]
            assert any(f"pid {cli.pid}" in m for m in messages), messages
    finally:
        _HangingHandler.release.set()
        for proc in (cli, daemon):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=60)
        server.shutdown()


def test_cli_runs_record_their_worker(isolated_env):
    """A real CLI run of the code location records the process that ran it."""
    env = {**os.environ, **isolated_env}
    proc = _cli(MATERIALIZE_RAW_HOUSING[1:], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = DagsterInstance.get().get_runs()
    worker = RunWorker.from_tag(run.tags.get(WORKER_TAG))
    assert worker is not None and worker.host == socket.gethostname()
    assert worker.pid != os.getpid() and not worker.is_alive()  # the CLI process has ended
