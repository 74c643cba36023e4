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
