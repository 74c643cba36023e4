"""Credentials in URLs never reach what is recorded or shown: the UI's view of the code location,
error messages, the rollback CLI. (The tuning storage's password on a real run: test_postgres.)"""

from __future__ import annotations

import pytest

from housing_assets.io.redaction import redact_url

PASSWORD, TOKEN = "pw-e5b1c0de", "tok-9f3a77"


@pytest.mark.security
@pytest.mark.parametrize(
    "url, expected",
    [
        (
            f"postgresql+psycopg2://optuna:{PASSWORD}@db:5432/optuna",
            "postgresql+psycopg2://***@db:5432/optuna",
        ),
        # SQLAlchemy's host-less form: the host and the password are query values.
        (
            f"postgresql+psycopg2:///optuna?host=db&password={PASSWORD}",
            "postgresql+psycopg2:///optuna?host=***&password=***",
        ),
        (
            f"file:///data/housing.tgz?X-Goog-Signature={TOKEN}&X-Goog-Date=20261203",
            "file:///data/housing.tgz?X-Goog-Signature=***&X-Goog-Date=***",
        ),
        (f"https://user:{PASSWORD}@host/p#token={TOKEN}", "https://***@host/p#***"),
        (f"https://{TOKEN}@host/a.tgz", "https://***@host/a.tgz"),  # a user name alone too
        (f"gs://bucket/key?x={TOKEN}", "gs://bucket/key?x=***"),
        (f"https://host/housing.tgz?{TOKEN}", "https://host/housing.tgz?***"),  # no name: no key
        (f"https://host:8443/a.tgz?sig={TOKEN}&&v", "https://host:8443/a.tgz?sig=***&&***"),
        (f"postgresql://u:{PASSWORD}/x@db/optuna", "postgresql://***@db/optuna"),  # "/" unescaped
        (f"http://u:{PASSWORD}@[::1]:5000/x", "http://***@[::1]:5000/x"),
        ("https://host:8080/a@b/c.tgz", "https://host:8080/a@b/c.tgz"),  # "@" in a path stays
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
        ("/data/housing.tgz", "/data/housing.tgz"),
        ("housing.csv?x=1", "housing.csv?x=1"),  # a plain path: "?" is part of its name
    ],
)
def test_redact_url_keeps_only_the_location(url, expected):
    redacted = redact_url(url)
    assert redacted == expected
    assert PASSWORD not in redacted and TOKEN not in redacted


@pytest.mark.security
@pytest.mark.parametrize(
    "odd", ["http://[::1/x", "://", "x://@@@", "", "a" * 10_000 + "://", None, 42, b"gs://b/k?x=1"]
)
def test_redact_url_never_raises(odd):
    assert isinstance(redact_url(odd), str)


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
    assert "HOUSING_SOURCE_URL" in snapshot  # the registry's URI is read when a run starts
    assert TOKEN not in snapshot and PASSWORD not in snapshot


def test_source_errors_name_the_location_without_its_token(http_server, tmp_path):
    from housing_assets.io.source import SourceError, fetch

    with pytest.raises(SourceError) as missing:
        fetch(f"{http_server}/missing.tgz?sig={TOKEN}", retries=1)
    assert "missing.tgz?sig=***: HTTP 404" in str(missing.value) and TOKEN not in str(missing.value)
    with pytest.raises(SourceError) as unknown:
        fetch(f"ftp://user:{PASSWORD}@host/housing.tgz")
    assert "ftp://***@host" in str(unknown.value) and PASSWORD not in str(unknown.value)


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
    assert "champion v2 -> v1 (postgresql://***@db/mlflow)" in out and PASSWORD not in out
