"""Dagster resources and IO managers, and the one place that picks them per environment."""

from __future__ import annotations

import os

from housing_assets import settings
from housing_assets.resources.io_managers import GCSDatasetIOManager, LocalDatasetIOManager
from housing_assets.resources.source import HousingSource
from housing_assets.resources.tracking import MlflowTracking, WandbTracking


def build_resources() -> dict:
    """Resources for this environment: local disk by default, GCS when HOUSING_GCS_BUCKET is set."""
    bucket = os.environ.get("HOUSING_GCS_BUCKET")
    if bucket:
        io_manager = GCSDatasetIOManager(
            bucket=bucket,
            prefix=os.environ.get("HOUSING_GCS_PREFIX", "housing_assets"),
            project=os.environ.get("GOOGLE_CLOUD_PROJECT"),
        )
    else:
        io_manager = LocalDatasetIOManager(base_dir=str(settings.data_dir() / "assets"))
    return {
        "io_manager": io_manager,
        "housing_source": HousingSource(
            url=settings.source_url(), landing_url=settings.landing_url()
        ),
        "mlflow": MlflowTracking(
            tracking_uri=settings.mlflow_tracking_uri(),
            artifact_location=settings.mlflow_artifact_location(),
        ),
        "wandb": WandbTracking(mode=settings.wandb_mode(), dir=str(settings.data_dir())),
    }


__all__ = [
    "GCSDatasetIOManager",
    "HousingSource",
    "LocalDatasetIOManager",
    "MlflowTracking",
    "WandbTracking",
    "build_resources",
]
