"""Processes in the background: free ports, waiting for a condition, a server waited for over
HTTP, and `housing-code-server` waited for over Dagster's gRPC health check."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from housing_assets_testkit.project import REPO_ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    predicate,
    timeout_s: float,
    what: str,
    poll_s: float = 0.1,
    process: subprocess.Popen | None = None,
):
    """The first truthy value of ``predicate()``, polled every ``poll_s``; TimeoutError after
    ``timeout_s`` naming ``what``, RuntimeError at once if ``process`` (the server doing the
    work) exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"{' '.join(map(str, process.args[:3]))} exited ({process.returncode}) "
                f"while waiting for {what}"
            )
        time.sleep(poll_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def stop_process_group(proc: subprocess.Popen, timeout_s: float = 60) -> None:
    """SIGTERM to ``proc``'s process group (it was started in a session of its own), SIGKILL
    after ``timeout_s``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def background_server(
    command: list[str],
    ready_url: str,
    *,
    env: dict[str, str],
    log_path: Path | None = None,
    cwd: Path = REPO_ROOT,
    timeout_s: float = 120,
) -> Iterator[subprocess.Popen]:
    """Start ``command`` in its own process group, wait until ``ready_url`` answers, and stop
    the whole group on exit. If it dies or never answers, the error carries its log's tail."""
    log = log_path.open("w") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=log, stderr=log, start_new_session=True
    )
    try:
        _wait_logged(
            lambda: _answers(ready_url), f"{ready_url} to answer", proc, timeout_s, log_path
        )
        yield proc
    finally:
        stop_process_group(proc)
        if log_path:
            log.close()


@contextlib.contextmanager
def warm_code_server(env: dict, tmp: str | Path) -> Iterator[Path]:
    """`housing-code-server` for this code location on a free port, as the compose stack's
    code service runs it; yields a workspace file pointing at it, once the server answers
    Dagster's gRPC health check. Its log is ``tmp/code-server.log``."""
    port = free_port()
    workspace = Path(tmp, "workspace-grpc.yaml")
    workspace.write_text(
        "load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
        f"      port: {port}\n      location_name: housing_assets\n"
    )
    bin_dir = Path(sys.executable).parent
    log_path = Path(tmp, "code-server.log")
    check = [str(bin_dir / "dagster"), "api", "grpc-health-check", "-p", str(port)]
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [str(bin_dir / "housing-code-server"), "-h", "127.0.0.1", "-p", str(port)]
            + ["-m", "housing_assets.definitions"],
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        try:
            _wait_logged(
                lambda: subprocess.run(check, capture_output=True).returncode == 0,
                "housing-code-server's health check",
                server,
                120,
                log_path,
            )
            yield workspace
        finally:
            stop_process_group(server)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def _wait_logged(
    predicate, what: str, proc: subprocess.Popen, timeout_s: float, log_path: Path | None
) -> None:
    """wait_for, with the tail of the server's log in the error."""
    try:
        wait_for(predicate, timeout_s, what, poll_s=0.5, process=proc)
    except (TimeoutError, RuntimeError) as exc:
        tail = log_path.read_text()[-3000:] if log_path and log_path.exists() else ""
        raise RuntimeError(f"{exc}\n{tail}") from exc
