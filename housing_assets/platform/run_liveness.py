"""A run whose worker process died is marked failed, so the run queue moves on.

Dagster's default run launcher cannot tell whether a run's worker is alive, so run monitoring
alone would only fail a killed run after ``max_runtime_seconds`` — and with one run at a time,
every queued run waits until then. Two pieces close that gap:

- ``worker_tagging_in_process_executor`` (the code location's executor) records where the run's
  worker runs — host, pid and the process's start time — as the run tag ``housing/worker`` when
  execution starts. This covers every run: CLI (`dagster asset materialize`), UI, sensor.
- ``LivenessCheckingRunLauncher`` (the instance's run launcher, in both dagster.yaml files) is
  Dagster's default launcher plus a worker health check for run monitoring: a worker on this
  host whose process is gone (or whose pid now belongs to another process) → FAILED. A worker on
  another host or container cannot be seen from here → RUNNING; the code server that launched it
  reports its death itself, and ``max_runtime_seconds`` still applies.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from dagster import DefaultRunLauncher, executor, in_process_executor
from dagster._core.executor.base import Executor
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus

WORKER_TAG = "housing/worker"


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
    """Dagster's default run launcher with a worker health check for run monitoring."""

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


class _WorkerTaggingExecutor(Executor):
    """Records the worker in the run's tags, then runs the wrapped executor unchanged."""

    def __init__(self, inner: Executor):
        self._inner = inner

    def execute(self, plan_context, execution_plan):
        plan_context.instance.add_run_tags(
            plan_context.run_id, {WORKER_TAG: RunWorker.this_process().to_tag()}
        )
        yield from self._inner.execute(plan_context, execution_plan)

    @property
    def retries(self):
        return self._inner.retries

    @property
    def step_dependency_config(self):
        return self._inner.step_dependency_config


@executor(
    name="in_process",  # Dagster's in-process executor: same name, same run config
    config_schema=in_process_executor.config_schema,
)
def worker_tagging_in_process_executor(init_context) -> Executor:
    """Dagster's in-process executor, recording the run's worker for liveness checks."""
    return _WorkerTaggingExecutor(in_process_executor.executor_creation_fn(init_context))
