"""The scale-out path on PostgreSQL, for real: a throwaway PostgreSQL cluster on 127.0.0.1 holds
the Dagster instance (dagster-postgres) and the Optuna study that two tuning workers share."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import yaml

from housing_assets.defs.smoke import SMOKE_RUN_CONFIG
from housing_assets_testkit import materialize_cli, throwaway_postgres

pytestmark = pytest.mark.e2e
PASSWORD = "optuna-pw-3c9e1f"


class _command_lines_watched:  # noqa: N801 (reads as a statement)
    """Collects the command lines of every process on the machine, every 0.1 s, while open."""

    def __enter__(self) -> list[str]:
        self.seen: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self.seen

    def _watch(self) -> None:
        known: set[str] = set()
        while not self.stop.wait(0.1):
            for pid in os.listdir("/proc"):
                try:
                    line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                except OSError:
                    continue
                text = line.decode(errors="replace")
                if text not in known:
                    known.add(text)
                    self.seen.append(text)

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def test_two_tuning_workers_on_postgres_and_a_dagster_postgres_instance(isolated_env, tmp_path):
    from dagster import DagsterInstance, DagsterRunStatus

    with throwaway_postgres(["dagster", "optuna"]) as server:
        host, port = server.split("@")[1].split(":")
        instance_yaml = {
            "storage": {
                "postgres": {
                    "postgres_db": {
                        "username": "housing",
                        "password": "",
                        "hostname": host,
                        "db_name": "dagster",
                        "port": int(port),
                    }
                }
            },
            "telemetry": {"enabled": False},
        }
        home = tmp_path / "dagster_home_pg"
        home.mkdir()
        (home / "dagster.yaml").write_text(yaml.safe_dump(instance_yaml))
        # A password the server ignores (trust authentication) but which must not be recorded:
        # the deployment's `optuna` resource reads it from the environment, the workers too.
        user, address = server.split("@")
        storage = f"postgresql+psycopg2://{user}:{PASSWORD}@{address}/optuna"
        tuning = {"n_trials": 8, "cv_folds": 2, "n_workers": 2}
        config = {"ops": {**SMOKE_RUN_CONFIG["ops"], "tuned_params": {"config": tuning}}}
        (tmp_path / "tuning.yaml").write_text(yaml.safe_dump(config))

        env = {**isolated_env, "DAGSTER_HOME": str(home), "HOUSING_OPTUNA_STORAGE": storage}
        with _command_lines_watched() as command_lines:
            result = materialize_cli("*", env, config=str(tmp_path / "tuning.yaml"))
        assert result.returncode == 0, result.stderr[-3000:]
        assert any(
            "housing_assets.io.tuning_workers" in c for c in command_lines
        )  # workers were seen
        assert not [c for c in command_lines if PASSWORD in c]
        assert PASSWORD not in result.stdout + result.stderr

        # The Dagster instance on PostgreSQL recorded the run and every materialization.
        with DagsterInstance.from_config(str(home)) as instance:
            runs = instance.get_runs()
            assert [r.status for r in runs] == [DagsterRunStatus.SUCCESS]
            records = instance.get_latest_materialization_events(list(instance.all_asset_keys()))
            assert {k.to_user_string() for k, e in records.items() if e} >= {
                "tuned_params",
                "registered_model",
            }
            tuned = records[next(k for k in records if k.to_user_string() == "tuned_params")]
            metadata = tuned.asset_materialization.metadata
            assert metadata["workers"].value == 2
            # Nothing the instance recorded holds the password: run config, events, metadata.
            (run,) = runs
            assert PASSWORD not in repr(run.run_config)
            assert PASSWORD not in repr(instance.all_logs(run.run_id))

        # Nor anything the run wrote: MLflow params and tags (its sqlite store and artifacts),
        # W&B configs (offline run files), the asset store, the instance's folder.
        leaks = [
            path
            for folder in (Path(isolated_env["HOUSING_DATA_DIR"]), home)
            for path in folder.rglob("*")
            if path.is_file() and PASSWORD.encode() in path.read_bytes()
        ]
        assert leaks == []

        # Both worker processes ran trials of the one study in PostgreSQL.
        import optuna

        (summary,) = optuna.get_all_study_summaries(storage)
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        finished = [t for t in study.trials if t.state.is_finished()]
        assert len(finished) >= 8
        pids = {t.user_attrs["worker_pid"] for t in finished}
        assert len(pids) == 2, pids


def test_the_webserver_replaces_a_pooled_connection_the_server_closed():
    """dagster-webserver holds a pooled PostgreSQL connection per storage: after PostgreSQL
    restarts, the next request on it fails. `housing-webserver` pings each connection at
    checkout, and the pool replaces a dead one (here the server ends the pooled connection's
    backend, as a restart does)."""
    import psycopg2
    import sqlalchemy as sa

    from housing_assets.platform.webserver import ping_pooled_connections

    with throwaway_postgres(["dagster"]) as where:
        user, address = where.split("@")
        host, port = address.split(":")
        url = f"postgresql+psycopg2://{where}/dagster"

        def close_pooled_connection(engine) -> None:
            with engine.connect() as connection:
                pid = connection.execute(sa.text("select pg_backend_pid()")).scalar()
            admin = psycopg2.connect(host=host, port=port, user=user, dbname="postgres")
            admin.autocommit = True
            with admin.cursor() as cursor:
                cursor.execute("select pg_terminate_backend(%s)", (pid,))
            admin.close()

        stock = sa.create_engine(url, pool_size=1, max_overflow=0)
        close_pooled_connection(stock)
        with pytest.raises(sa.exc.OperationalError), stock.connect() as connection:
            connection.execute(sa.text("select 1"))  # what the webserver's next request met

        pinged = sa.create_engine(url, pool_size=1, max_overflow=0)
        ping_pooled_connections(pinged)
        close_pooled_connection(pinged)
        with pinged.connect() as connection:
            assert connection.execute(sa.text("select 1")).scalar() == 1
        stock.dispose()
        pinged.dispose()
