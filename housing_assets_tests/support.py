"""Plain helpers shared by the tests and the benchmark scripts (no pytest here): the real
dataset beside the repository, free ports, a fresh project environment, and a server process
started in the background and waited for over HTTP."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from housing_assets.ml.schema import OCEAN_CATEGORIES, RAW_COLUMNS

REPO_ROOT = Path(__file__).resolve().parents[1]
CONTRACT_ASSETS = [
    "raw_housing",
    "imputed_housing",
    "geo_features",
    "train_test_split",
    "model_comparison",
    "tuned_params",
    "registered_model",
]
# The assets whose ML call is timed as `compute_s` metadata (the others only move data); the
# bare benchmark script times the same calls as its steps.
ML_ASSETS = [
    "imputed_housing",
    "geo_features",
    "model_comparison",
    "tuned_params",
    "registered_model",
]


def find_dataset() -> Path | None:
    """``HOUSING_TEST_DATA``, else ``shared/data/housing.tgz`` beside the repository, if there."""
    candidates = [os.environ.get("HOUSING_TEST_DATA", "")]
    candidates += [str(p / "shared" / "data" / "housing.tgz") for p in REPO_ROOT.parents]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fresh_project_env(tmp: str | Path, source: str, **extra: str) -> dict[str, str]:
    """Variables for a fresh project under ``tmp``: its own Dagster home (the repo's
    dagster.yaml), data folder (so its own MLflow store and landing zone), W&B offline."""
    home = Path(tmp, "dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    return {
        "DAGSTER_HOME": str(home),
        "HOUSING_DATA_DIR": str(Path(tmp, "data")),
        "HOUSING_SOURCE_URL": source,
        "WANDB_MODE": "offline",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        **extra,
    }


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
        _wait_until_answering(ready_url, proc, timeout_s, log_path)
        yield proc
    finally:
        stop_process_group(proc)
        if log_path:
            log.close()


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


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def _wait_until_answering(
    url: str, proc: subprocess.Popen, timeout_s: float, log_path: Path | None
) -> None:
    try:
        wait_for(lambda: _answers(url), timeout_s, f"{url} to answer", poll_s=0.5, process=proc)
    except (TimeoutError, RuntimeError) as exc:
        tail = log_path.read_text()[-3000:] if log_path and log_path.exists() else ""
        raise RuntimeError(f"{exc}\n{tail}") from exc


def make_synthetic_housing(n: int = 600, seed: int = 0, missing: int = 20) -> pd.DataFrame:
    """Rows in the raw schema with a known structure: price rises with income and falls inland."""
    rng = np.random.default_rng(seed)
    households = rng.uniform(100, 1500, n).round()
    rooms = households * rng.uniform(3, 7, n)
    income = rng.uniform(0.5, 12, n)
    longitude = rng.uniform(-124, -115, n)
    latitude = rng.uniform(33, 41, n)
    inland = longitude > -119.5
    price = 40_000 + 35_000 * income - 60_000 * inland + rng.normal(0, 8_000, n)
    frame = pd.DataFrame(
        {
            "longitude": longitude,
            "latitude": latitude,
            "housing_median_age": rng.uniform(1, 52, n).round(),
            "total_rooms": rooms.round(),
            "total_bedrooms": (rooms * 0.2 + rng.normal(0, 5, n)).round(),
            "population": (households * rng.uniform(2, 4, n)).round(),
            "households": households,
            "median_income": income,
            "median_house_value": np.clip(price, 15_000, 500_001),
            "ocean_proximity": np.where(
                inland, "INLAND", rng.choice(OCEAN_CATEGORIES[:1] + OCEAN_CATEGORIES[2:4], n)
            ),
        }
    )[RAW_COLUMNS]
    frame.loc[rng.choice(n, size=min(missing, n // 10), replace=False), "total_bedrooms"] = np.nan
    return frame


def materialize_cli(selection: str, env: dict, config: str = "configs/smoke.yaml"):
    """`dagster asset materialize` in a new process, as a user runs it (smoke config)."""
    options = ["--select", selection, "-c", str(REPO_ROOT / config)]
    return _dagster_cli(["asset", "materialize"], options, env)


def execute_job_cli(job: str, env: dict, **run_options):
    """`dagster job execute` of ``job`` in a new process, as `make run` does; ``run_options``
    go to subprocess.run (e.g. check=True)."""
    return _dagster_cli(["job", "execute"], ["-j", job], env, **run_options)


def _dagster_cli(command: list[str], options: list[str], env: dict, **run_options):
    """The dagster CLI on this code location, from the repository root, output captured."""
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            *command,
            "-m",
            "housing_assets.definitions",
            *options,
        ],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        **{"timeout": 900, **run_options},
    )


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
            deadline = time.monotonic() + 120
            check = [str(bin_dir / "dagster"), "api", "grpc-health-check", "-p", str(port)]
            while subprocess.run(check, capture_output=True).returncode != 0:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"housing-code-server did not start\n{log_path.read_text()}")
                time.sleep(0.5)
            yield workspace
        finally:
            stop_process_group(server)


def launch_runs_at_once(env: dict) -> None:
    """Make the project under ``env`` launch a submitted run at once (Dagster's default run
    coordinator) instead of queueing it for the daemon, the instance file otherwise as shipped."""
    import yaml

    instance_file = Path(env["DAGSTER_HOME"], "dagster.yaml")
    config = yaml.safe_load(instance_file.read_text())
    config["run_coordinator"] = {
        "module": "dagster._core.run_coordinator",
        "class": "DefaultRunCoordinator",
    }
    instance_file.write_text(yaml.safe_dump(config))


def launch_job_cli(job: str, env: dict, workspace: Path, **run_options):
    """`dagster job launch` of ``job`` through the code server of ``workspace``."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "job", "launch", "-w", str(workspace)]
        + ["-j", job],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        **{"timeout": 300, **run_options},
    )


def _postgres_bin(name: str) -> str:
    """A PostgreSQL server binary: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name) or next(
        (str(p) for p in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None
    )
    if found is None:
        raise FileNotFoundError(f"PostgreSQL's {name} not found (apt-get install postgresql)")
    return found


@contextlib.contextmanager
def throwaway_postgres(databases: list[str]) -> Iterator[str]:
    """A PostgreSQL cluster in a temporary folder on 127.0.0.1 (trust authentication, loopback
    only), with ``databases`` created; yields ``user@127.0.0.1:port``. Stopped and removed on
    exit."""
    tmp = Path(tempfile.mkdtemp(prefix="housing-postgres-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        as_postgres = ["runuser", "-u", "postgres", "--"]
        shutil.chown(tmp, "postgres")
    data, port, user = tmp / "pgdata", free_port(), "housing"
    subprocess.run(
        [*as_postgres, _postgres_bin("initdb"), "-D", str(data), "-U", user, "-A", "trust"],
        check=True,
        capture_output=True,
    )
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {tmp}"
    pg_ctl = [*as_postgres, _postgres_bin("pg_ctl"), "-D", str(data)]
    subprocess.run(
        [*pg_ctl, "-o", options, "-l", str(tmp / "postgres.log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=port, user=user, dbname="postgres")
        connection.autocommit = True
        with connection.cursor() as cursor:
            for name in databases:
                cursor.execute(f'CREATE DATABASE "{name}"')
        connection.close()
        yield f"{user}@127.0.0.1:{port}"
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def wandb_offline_records(path: Path) -> Iterator[bytes]:
    """The protobuf records of a W&B offline run file (``run-*.wandb``): a 7-byte W&B header,
    then LevelDB's log format (32 KiB blocks of chunks: crc32c, length, type, data)."""
    data = path.read_bytes()
    block, position, pending = 32768, 7, b""
    while position + 7 <= len(data):
        left_in_block = block - position % block
        if left_in_block < 7:  # block trailer
            position += left_in_block
            continue
        length = int.from_bytes(data[position + 4 : position + 6], "little")
        kind = data[position + 6]
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 0:  # zero padding
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):  # FULL or LAST
            yield pending
            pending = b""
