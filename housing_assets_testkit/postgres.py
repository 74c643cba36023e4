"""A throwaway PostgreSQL cluster from the server binaries on the machine (no Docker)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from housing_assets_testkit.processes import free_port


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
