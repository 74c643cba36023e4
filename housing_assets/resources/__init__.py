"""Dagster resources and IO managers, and the one place that picks them per environment."""

from __future__ import annotations

import os

from dagster import EnvVar

from housing_assets import settings
from housing_assets.resources.compute import Compute
from housing_assets.resources.io_managers import GCSDatasetIOManager, LocalDatasetIOManager
from housing_assets.resources.source import HousingSource
from housing_assets.resources.tracking import MlflowTracking, WandbTracking


def build_resources() -> dict:
    """Resources for this environment: local disk by default, GCS when HOUSING_GCS_BUCKET is set.

    Wherever GCS is used (the asset bucket, a ``gs://`` dataset or landing zone) one dagster-gcp
    ``GCSResource`` (key ``gcs``) serves them all; dagster_gcp is imported only then, so a local
    code location does not pay for it.
    """
    bucket = os.environ.get("HOUSING_GCS_BUCKET")
    source, landing = settings.source_url(), settings.landing_url()
    gcs = None
    if bucket or source.startswith("gs://") or landing.startswith("gs://"):
        from housing_assets.io.gcs import gcs_resource

        gcs = gcs_resource()
    if bucket:
        io_manager = GCSDatasetIOManager(
            gcs=gcs, bucket=bucket, prefix=os.environ.get("HOUSING_GCS_PREFIX", "housing_assets")
        )
    else:
        io_manager = LocalDatasetIOManager(base_dir=str(settings.data_dir() / "assets"))
    resources = {
        "io_manager": io_manager,
        "housing_source": HousingSource(
            url=_recorded_as_env("HOUSING_SOURCE_URL", source),
            landing_url=landing,
            landing_settle_s=float(os.environ.get("HOUSING_LANDING_SETTLE_S", "3")),
            gcs=gcs,
        ),
        "mlflow": MlflowTracking(
            tracking_uri=_recorded_as_env("MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri()),
            artifact_location=settings.mlflow_artifact_location(),
        ),
        "wandb": WandbTracking(mode=settings.wandb_mode(), dir=str(settings.data_dir())),
        "compute": Compute(threads=settings.threads()),
    }
    if gcs is not None:
        resources["gcs"] = gcs
    return resources


def _recorded_as_env(name: str, value: str) -> str | EnvVar:
    """``EnvVar(name)`` when the value comes from the environment, so that the code location's
    snapshot (what the UI shows on its Resources page) holds the variable's name, not a URL that
    may carry a password or a signed token; else the default ``value``."""
    return EnvVar(name) if os.environ.get(name) else value


__all__ = [
    "Compute",
    "GCSDatasetIOManager",
    "HousingSource",
    "LocalDatasetIOManager",
    "MlflowTracking",
    "WandbTracking",
    "build_resources",
]
