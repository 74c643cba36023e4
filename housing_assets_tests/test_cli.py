"""The CLI users run: a full smoke materialization, then `--select tuned_params+` alone, which
reads its upstream inputs back from storage."""

from pathlib import Path

import pytest

from housing_assets_tests.support import materialize_cli

pytestmark = pytest.mark.e2e


def test_cli_full_then_tuned_params_plus(isolated_env):
    first = materialize_cli("*", isolated_env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "RUN_SUCCESS" in first.stderr

    second = materialize_cli("tuned_params+", isolated_env)
    assert second.returncode == 0, second.stderr[-3000:]
    log = second.stderr
    assert 'Started execution of step "tuned_params"' in log
    assert 'Started execution of step "registered_model"' in log
    assert 'Started execution of step "raw_housing"' not in log
    assert 'Loaded input "train_test_split"' in log

    from mlflow import MlflowClient

    store = isolated_env_tracking_uri(isolated_env)
    client = MlflowClient(store, registry_uri=store)  # not MLflow's process-wide registry URI
    versions = client.search_model_versions("name='housing_price_model'")
    assert sorted(int(v.version) for v in versions) == [1, 2]


def isolated_env_tracking_uri(env: dict) -> str:
    return f"sqlite:///{Path(env['HOUSING_DATA_DIR']).resolve() / 'mlflow' / 'mlflow.db'}"
