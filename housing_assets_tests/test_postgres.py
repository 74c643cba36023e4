"""The scale-out path on PostgreSQL, for real: a throwaway PostgreSQL cluster on 127.0.0.1 holds
the Dagster instance (dagster-postgres) and the Optuna study that two tuning workers share."""

from __future__ import annotations

import pytest
import yaml

from housing_assets.smoke import SMOKE_RUN_CONFIG
from housing_assets_tests.support import materialize_cli, throwaway_postgres

pytestmark = pytest.mark.e2e


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
        storage = f"postgresql+psycopg2://{server}/optuna"
        config = {
            "ops": {
                **SMOKE_RUN_CONFIG["ops"],
                "tuned_params": {
                    "config": {"n_trials": 8, "cv_folds": 2, "n_workers": 2, "storage": storage}
                },
            }
        }
        (tmp_path / "tuning.yaml").write_text(yaml.safe_dump(config))

        env = {**isolated_env, "DAGSTER_HOME": str(home)}
        result = materialize_cli("*", env, config=str(tmp_path / "tuning.yaml"))
        assert result.returncode == 0, result.stderr[-3000:]

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

        # Both worker processes ran trials of the one study in PostgreSQL.
        import optuna

        (summary,) = optuna.get_all_study_summaries(storage)
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        finished = [t for t in study.trials if t.state.is_finished()]
        assert len(finished) >= 8
        pids = {t.user_attrs["worker_pid"] for t in finished}
        assert len(pids) == 2, pids
