"""Credentials in URLs never reach what is recorded or shown: the UI's view of the code location,
error messages, the rollback CLI. (The tuning storage's password on a real run: test_postgres.)"""

from __future__ import annotations

import pytest

from housing_assets.io.redaction import redact_url

PASSWORD, TOKEN = "pw-e5b1c0de", "tok-9f3a77"


def test_redact_url_keeps_the_location_and_drops_credentials():
    assert redact_url(f"postgresql+psycopg2://optuna:{PASSWORD}@db:5432/optuna") == (
        "postgresql+psycopg2://optuna:***@db:5432/optuna"
    )
    assert redact_url(f"https://host/housing.tgz?X-Goog-Signature={TOKEN}") == (
        "https://host/housing.tgz?***"
    )
    assert redact_url("https://user@host/a.tgz") == "https://user@host/a.tgz"
    assert redact_url("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
    assert redact_url("/data/housing.tgz") == "/data/housing.tgz"


def test_the_code_location_snapshot_names_variables_not_their_secret_values(monkeypatch):
    """What the UI shows of the resources (their configured values) comes from a snapshot of the
    code location: URLs from the environment appear there as the variable's name."""
    from dagster import Definitions
    from dagster._core.remote_representation.external_data import RepositorySnap
    from dagster._serdes import serialize_value

    from housing_assets.defs.assets import PIPELINE_ASSETS
    from housing_assets.resources import build_resources

    monkeypatch.setenv("HOUSING_SOURCE_URL", f"https://host/housing.tgz?sig={TOKEN}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"postgresql://mlflow:{PASSWORD}@db/mlflow")
    resources = build_resources()
    defs = Definitions(assets=PIPELINE_ASSETS, resources=resources)
    snapshot = serialize_value(RepositorySnap.from_def(defs.get_repository_def()))
    assert "HOUSING_SOURCE_URL" in snapshot and "MLFLOW_TRACKING_URI" in snapshot
    assert TOKEN not in snapshot and PASSWORD not in snapshot
    # ...and the resources still get the real values when a run uses them.
    assert resources["housing_source"].url.get_value().endswith(TOKEN)


def test_source_errors_name_the_location_without_its_token(http_server, tmp_path):
    from housing_assets.io.source import SourceError, fetch

    with pytest.raises(SourceError) as missing:
        fetch(f"{http_server}/missing.tgz?sig={TOKEN}", retries=1)
    assert "missing.tgz?***: HTTP 404" in str(missing.value) and TOKEN not in str(missing.value)
    with pytest.raises(SourceError) as unknown:
        fetch(f"ftp://user:{PASSWORD}@host/housing.tgz")
    assert "ftp://user:***@host" in str(unknown.value) and PASSWORD not in str(unknown.value)


def test_rollback_prints_the_registry_without_its_password(monkeypatch, capsys, tmp_path):
    from housing_assets.cli import rollback

    # Only what is printed is under test: the registry (a PostgreSQL server that is not here)
    # is replaced; rolling back a real registry is tested in test_sensor_and_rollback.py.
    def fake_rollback(client, model, reason, who, to_version):
        return "2", "1"

    monkeypatch.setattr("mlflow.MlflowClient", lambda **uris: None)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"postgresql://mlflow:{PASSWORD}@db/mlflow")
    monkeypatch.setattr(rollback, "rollback_champion", fake_rollback)
    assert rollback.main(["--reason", "test"]) == 0
    out = capsys.readouterr().out
    assert "champion v2 -> v1 (postgresql://mlflow:***@db/mlflow)" in out and PASSWORD not in out
