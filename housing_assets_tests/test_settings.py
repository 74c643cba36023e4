"""One environment switch: HOUSING_DEPLOYMENT picks a named resource set; bad settings fail at
load with a message naming the variable."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from housing_assets.resources import RESOURCE_SETS, build_resources, resource_values
from housing_assets.resources.io_managers import GCSDatasetIOManager, LocalDatasetIOManager
from housing_assets.settings import Settings, SettingsError

PACKAGE = Path(__file__).resolve().parents[1] / "housing_assets"


def test_local_is_the_default_and_keeps_everything_in_the_data_folder(tmp_path):
    settings = Settings.from_env({"HOUSING_DATA_DIR": str(tmp_path)})
    assert settings.deployment == "local"
    resources = resource_values(settings)
    assert isinstance(resources["io_manager"], LocalDatasetIOManager)
    assert resources["io_manager"].base_dir == str(tmp_path / "assets")
    assert resources["mlflow"].tracking_uri == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    assert resources["optuna"].for_workers(1) is None  # one worker: the study stays in memory
    assert resources["optuna"].for_workers(2) == f"sqlite:///{tmp_path / 'optuna' / 'studies.db'}"
    assert "gcs" not in resources  # dagster_gcp is not even imported


def test_a_bucket_alone_means_gcs_as_the_contract_says(tmp_path):
    settings = Settings.from_env(
        {"HOUSING_DATA_DIR": str(tmp_path), "HOUSING_GCS_BUCKET": "b", "STORAGE_EMULATOR_HOST": "x"}
    )
    assert settings.deployment == "gcs" and settings.gcp_project == "local"
    resources = resource_values(settings)
    assert isinstance(resources["io_manager"], GCSDatasetIOManager)
    assert resources["io_manager"].bucket == "b" and "gcs" in resources


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"HOUSING_DEPLOYMENT": "prod"}, "HOUSING_DEPLOYMENT='prod'"),
        ({"HOUSING_DEPLOYMENT": "gcs"}, "HOUSING_GCS_BUCKET"),
        ({"HOUSING_DEPLOYMENT": "compose"}, "MLFLOW_TRACKING_URI and HOUSING_OPTUNA_STORAGE"),
        ({"HOUSING_DEPLOYMENT": "local", "HOUSING_GCS_BUCKET": "b"}, "HOUSING_GCS_BUCKET"),
        ({"HOUSING_THREADS": "two"}, "HOUSING_THREADS='two'"),
        ({"HOUSING_SENSOR_INTERVAL_S": "-5"}, "HOUSING_SENSOR_INTERVAL_S"),
    ],
)
def test_bad_settings_fail_naming_the_variable(environ, named):
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(environ)


def test_compose_uses_the_stacks_servers():
    settings = Settings.from_env(
        {
            "HOUSING_DEPLOYMENT": "compose",
            "MLFLOW_TRACKING_URI": "http://mlflow:5000",
            "HOUSING_OPTUNA_STORAGE": "postgresql+psycopg2://u:secret@db/optuna",
            "HOUSING_DATA_DIR": "/opt/dagster/data",
        }
    )
    assert settings.mlflow_artifacts is None  # the tracking server decides
    assert set(RESOURCE_SETS) == {"local", "gcs", "compose"}


def test_a_bad_setting_fails_the_code_location_at_load(tmp_path):
    env = {"HOUSING_DEPLOYMENT": "staging", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    loaded = subprocess.run(
        [sys.executable, "-c", "import housing_assets.definitions"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert loaded.returncode != 0
    assert "HOUSING_DEPLOYMENT='staging' is not a deployment" in loaded.stderr


def _reads_a_variable(node: ast.AST) -> bool:
    """``os.environ.get(...)``, ``os.getenv(...)``, ``os.environ[...]`` or ``... in os.environ``
    (handing the environment on to a child process is not reading a setting)."""

    def is_environ(expr) -> bool:
        return isinstance(expr, ast.Attribute) and expr.attr == "environ"

    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return (node.func.attr == "get" and is_environ(node.func.value)) or (
            node.func.attr == "getenv"
        )
    if isinstance(node, ast.Subscript):
        return is_environ(node.value) and isinstance(node.ctx, ast.Load)
    if isinstance(node, ast.Compare):
        return any(is_environ(c) for c in node.comparators)
    return False


def test_only_the_settings_module_and_resources_read_the_environment():
    readers = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative == "settings.py" or relative.startswith("resources/"):
            continue
        tree = ast.parse(path.read_text())
        readers += [f"{relative}:{n.lineno}" for n in ast.walk(tree) if _reads_a_variable(n)]
    assert readers == []


@pytest.mark.parametrize(
    ("resource", "field", "value"),
    [
        ("mlflow", "tracking_uri", "http://127.0.0.1:9/"),
        ("housing_source", "url", "http://127.0.0.1:9/housing.tgz"),
        ("io_manager", "base_dir", "/tmp/elsewhere"),
        ("optuna", "url", "postgresql://attacker/optuna"),
    ],
)
def test_run_config_cannot_move_a_credentialed_endpoint(tmp_path, resource, field, value):
    """The deployment fixes where credentials go: a launch-time run config that points a
    resource elsewhere fails validation, naming the field, before anything runs."""
    from dagster import DagsterInvalidConfigError, materialize

    from housing_assets.defs.assets import PIPELINE_ASSETS, raw_housing

    resources = build_resources(Settings.from_env({"HOUSING_DATA_DIR": str(tmp_path)}))
    run_config = {"resources": {resource: {"config": {field: value}}}}
    with pytest.raises(DagsterInvalidConfigError, match=f'unexpected config entry "{field}"'):
        materialize(
            PIPELINE_ASSETS,
            selection=[raw_housing.key],
            resources=resources,
            run_config=run_config,
        )
    assert not (tmp_path / "assets").exists()  # nothing ran
