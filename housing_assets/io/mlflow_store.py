"""A new SQLite MLflow store from a cached empty schema instead of MLflow's migrations.

MLflow creates a SQLite store by running every Alembic migration since its first schema: ~2 s
here, paid by each new project (and each test or benchmark in a fresh folder). The empty
schema a given MLflow version produces is always the same, so it is built once per version,
by MLflow itself, kept in a cache folder and copied. The copy holds no experiment: MLflow adds
its ``Default`` experiment, with this store's artifact location, when it first opens it.
Anything that goes wrong here leaves the store to MLflow, which then creates it as usual.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import tempfile
import uuid
from pathlib import Path

logger = logging.getLogger(__name__)

SQLITE_PREFIX = "sqlite:///"


def cache_folder() -> Path:
    """``$HOUSING_CACHE_DIR``, else ``$XDG_CACHE_HOME/housing_assets``, else ``~/.cache/...``."""
    from housing_assets import settings

    return settings.load().cache_dir


def create_from_schema_cache(tracking_uri: str) -> bool:
    """Create the SQLite store ``tracking_uri`` names from the cached empty schema, if it does
    not exist yet. True when this call created it; False when it already existed, the URI is
    not a local SQLite file, or the cache cannot be used (MLflow then creates it itself)."""
    if not tracking_uri.startswith(SQLITE_PREFIX) or "?" in tracking_uri:
        return False
    store = Path(tracking_uri[len(SQLITE_PREFIX) :])
    if store.exists():
        return False
    try:
        schema = _empty_schema()
        return _copy_if_absent(schema, store)
    except Exception as exc:  # noqa: BLE001 (whatever it is, MLflow creates the store as usual)
        logger.info("MLflow creates %s itself (the schema cache is not usable: %s)", store, exc)
        return False


def _empty_schema() -> Path:
    """The cached empty store of the installed MLflow version, built on first use."""
    import mlflow

    schema = cache_folder() / f"mlflow-{mlflow.__version__}-empty.db"
    if not schema.exists():
        schema.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=schema.parent) as tmp:
            built = Path(tmp) / "store.db"
            _build_empty_store(built)
            _copy_if_absent(built, schema)
    return schema


def _build_empty_store(path: Path) -> None:
    """MLflow's own store at ``path`` (migrations, tracking and registry tables), without the
    ``Default`` experiment, whose artifact location would be this temporary folder's."""
    from mlflow.store.model_registry.sqlalchemy_store import (
        SqlAlchemyStore as RegistryStore,
    )
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    uri = f"{SQLITE_PREFIX}{path}"
    tracking = SqlAlchemyStore(uri, str(path.parent / "artifacts"))
    registry = RegistryStore(uri)
    tracking.engine.dispose()
    registry.engine.dispose()
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM experiment_tags")
        db.execute("DELETE FROM experiments")
    db.close()


def _copy_if_absent(source: Path, target: Path) -> bool:
    """Copy ``source`` to ``target`` atomically, never over an existing file (a concurrent
    creator that won keeps its store, and whatever it has already written there). True when
    this call created ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    try:
        shutil.copyfile(source, partial)  # a new file: the process's umask applies, as for MLflow
        try:
            os.link(partial, target)
        except FileExistsError:
            return False
        return True
    finally:
        partial.unlink(missing_ok=True)
