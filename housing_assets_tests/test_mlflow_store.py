"""New SQLite MLflow stores copied from the cached empty schema: the same store MLflow would
create, never over an existing one, and MLflow's own creation whenever the cache is not usable.
Real MLflow stores throughout."""

from __future__ import annotations

import sqlite3

import mlflow
import pytest

from housing_assets.io.mlflow_store import cache_folder, create_from_schema_cache


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("HOUSING_CACHE_DIR", str(folder))
    return folder


def _uri(path) -> str:
    return f"sqlite:///{path}"


def _schema(path) -> tuple[list, list]:
    """Tables, indexes and their columns and constraints (in any order: MLflow's own order
    varies from one creation to the next), and the schema's revision."""
    with sqlite3.connect(path) as db:
        objects = sorted(
            (kind, name, sorted(line.strip(" ,") for line in (sql or "").splitlines()))
            for kind, name, sql in db.execute("SELECT type, name, sql FROM sqlite_master")
        )
        return objects, db.execute("SELECT * FROM alembic_version").fetchall()


def test_a_copied_store_is_the_store_mlflow_creates_with_its_own_default_experiment(
    cache, tmp_path
):
    assert create_from_schema_cache(_uri(tmp_path / "first" / "mlflow.db"))
    assert create_from_schema_cache(_uri(tmp_path / "second" / "mlflow.db"))
    assert [p.name for p in cache.iterdir()] == [f"mlflow-{mlflow.__version__}-empty.db"]

    by_mlflow = tmp_path / "by-mlflow" / "mlflow.db"
    by_mlflow.parent.mkdir()
    mlflow.MlflowClient(_uri(by_mlflow), _uri(by_mlflow)).search_registered_models()
    mlflow.MlflowClient(_uri(by_mlflow)).get_experiment("0")
    assert _schema(tmp_path / "second" / "mlflow.db") == _schema(by_mlflow)

    store = _uri(tmp_path / "second" / "mlflow.db")
    client = mlflow.MlflowClient(tracking_uri=store, registry_uri=store)
    default = client.get_experiment("0")  # added by MLflow on first open, for this store
    assert default.name == "Default" and str(cache) not in default.artifact_location
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "a").as_uri())
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "rmse", 1.5)
    client.create_registered_model("m")
    assert client.get_run(run.info.run_id).data.metrics == {"rmse": 1.5}


def test_an_existing_store_is_never_replaced(cache, tmp_path):
    path = tmp_path / "mlflow.db"
    assert create_from_schema_cache(_uri(path))
    client = mlflow.MlflowClient(tracking_uri=_uri(path))
    run = client.create_run(client.create_experiment("e"))
    assert not create_from_schema_cache(_uri(path))
    assert client.get_run(run.info.run_id).info.run_id == run.info.run_id
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no leftovers


def test_an_unusable_cache_leaves_the_store_to_mlflow(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("HOUSING_CACHE_DIR", str(blocker / "cache"))
    path = tmp_path / "store" / "mlflow.db"
    assert not create_from_schema_cache(_uri(path))
    assert not path.exists()
    path.parent.mkdir()
    assert mlflow.MlflowClient(tracking_uri=_uri(path)).get_experiment("0").name == "Default"


def test_only_local_sqlite_stores_are_copied(cache, tmp_path):
    assert not create_from_schema_cache("http://mlflow:5000")
    assert not create_from_schema_cache("postgresql://u@db/mlflow")
    assert not create_from_schema_cache(_uri(tmp_path / "mlflow.db") + "?timeout=5")
    assert not cache.exists()


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("HOUSING_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_folder() == tmp_path / "housing_assets"
    monkeypatch.setenv("HOUSING_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_folder() == tmp_path / "mine"
