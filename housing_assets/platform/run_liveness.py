"""A run whose worker process died is marked failed, so the run queue moves on.

Opt-in instance plumbing, not part of the code location: both pieces are named by the instance
config (dagster.yaml, deploy/dagster.yaml), and the code location runs the same without them.

Dagster's default run launcher cannot tell whether a run's worker is alive, so run monitoring
alone would only fail a killed run after ``max_runtime_seconds`` — and with one run at a time,
every queued run waits until then. Two pieces close that gap:

- ``RunWorkerRecorder`` (a Python log handler, the instance's ``python_logs`` handler) records
  where the run's worker runs — host, pid and the process's start time — as the run tag
  ``housing/worker`` when the run's ``RUN_START`` event is logged, in the process that
  orchestrates the run. This covers every run whose instance has the setting: CLI
  (`dagster asset materialize`), UI, sensor, schedule.
- ``LivenessCheckingRunLauncher`` (the instance's run launcher) is Dagster's default launcher
  plus a worker health check for run monitoring: a worker on this host whose process is gone
  (or whose pid now belongs to another process) → FAILED. A worker on another host or
  container cannot be seen from here → RUNNING; the code server that launched it reports its
  death itself, and ``max_runtime_seconds`` still applies.

Dagster internals they rely on (housing_assets_tests/test_run_liveness.py fails when one
changes): the launcher's health-check hooks (``supports_check_run_worker_health``,
``check_run_worker_health``, ``CheckRunHealthResult`` and ``WorkerStatus`` from
``dagster._core.launcher``), and the ``dagster_meta`` attribute of the log records Dagster
hands to ``python_logs`` handlers (its ``run_id`` and ``dagster_event``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, DefaultRunLauncher
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus

from housing_assets.settings import load as load_settings

WORKER_TAG = "housing/worker"

#: The attribute Dagster's log manager sets on each record it hands to its handlers.
DAGSTER_RECORD_METADATA = "dagster_meta"

_log = logging.getLogger(__name__)  # not a logger Dagster manages: no record comes back here


@dataclass(frozen=True)
class RunWorker:
    """Where a run's worker process lives; ``started`` guards against pid reuse."""

    host: str
    pid: int
    started: int | None

    @classmethod
    def this_process(cls) -> RunWorker:
        return cls(socket.gethostname(), os.getpid(), process_start_time(os.getpid()))

    @classmethod
    def from_tag(cls, value: str | None) -> RunWorker | None:
        if not value:
            return None
        try:
            fields = json.loads(value)
            return cls(str(fields["host"]), int(fields["pid"]), fields.get("started"))
        except (ValueError, KeyError, TypeError):
            return None

    def to_tag(self) -> str:
        return json.dumps({"host": self.host, "pid": self.pid, "started": self.started})

    def is_alive(self) -> bool:
        """Only meaningful on ``self.host``: is the same process still running?"""
        started = process_start_time(self.pid)
        if started is not None or self.started is not None:
            return started is not None and started == self.started
        try:  # no /proc: the pid alone (may be fooled by pid reuse)
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), or None if there is no such
    live process (a zombie counts as gone) or no /proc to ask."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    state, start_ticks = fields[0], fields[19]
    return None if state in ("Z", "X") else int(start_ticks)


class LivenessCheckingRunLauncher(DefaultRunLauncher):
    """Dagster's default run launcher with a worker health check for run monitoring (the
    worker as ``RunWorkerRecorder`` recorded it)."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run) -> CheckRunHealthResult:
        worker = RunWorker.from_tag(run.tags.get(WORKER_TAG))
        if worker is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no worker recorded yet")
        if worker.host != socket.gethostname():
            return CheckRunHealthResult(
                WorkerStatus.RUNNING, f"worker on {worker.host}: not visible from here"
            )
        if worker.is_alive():
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"the run's worker process (pid {worker.pid} on {worker.host}) is gone: "
            "killed or crashed before the run could finish",
        )


class RunWorkerRecorder(logging.Handler):
    """A ``python_logs`` handler of the Dagster instance: when a run's ``RUN_START`` event is
    logged, records this process as the run's worker (tag ``housing/worker``).

    Dagster hands every record of a run's log manager to the instance's ``python_logs``
    handlers, in each process that executes part of the run; only the process orchestrating the
    run logs ``RUN_START`` (also when a run is resumed in a new process). The tag is written
    through the instance of ``DAGSTER_HOME`` (the one whose dagster.yaml names this handler),
    opened once per process. A failure to record is logged, never raised: the run goes on,
    and run monitoring can then only fail it after ``max_runtime_seconds``.
    """

    def emit(self, record: logging.LogRecord) -> None:
        metadata = getattr(record, DAGSTER_RECORD_METADATA, None)
        if not isinstance(metadata, dict):
            return
        event, run_id = metadata.get("dagster_event"), metadata.get("run_id")
        if event is None or not run_id or event.event_type != DagsterEventType.RUN_START:
            return
        try:
            _home_instance().add_run_tags(run_id, {WORKER_TAG: RunWorker.this_process().to_tag()})
        except Exception as exc:  # noqa: BLE001 (recording is best effort; the run goes on)
            _log.warning("The worker of run %s is not recorded: %s", run_id, exc)


_instances: dict[tuple[str, int], DagsterInstance] = {}
_instances_lock = threading.Lock()


def _home_instance() -> DagsterInstance:
    """The instance of ``DAGSTER_HOME``, one per process (a forked child opens its own)."""
    home = load_settings().dagster_home
    if not home:
        raise RuntimeError("DAGSTER_HOME is not set")
    key = (home, os.getpid())
    with _instances_lock:
        if key not in _instances:
            _instances[key] = DagsterInstance.get()
        return _instances[key]
