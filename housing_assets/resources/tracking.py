"""Experiment tracking resources: MLflow (runs + model registry) and Weights & Biases."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from dagster import ConfigurableResource


class MlflowTracking(ConfigurableResource):
    """MLflow tracking and registry store, and the experiment the pipeline logs to.

    Every run is opened and closed by the asset that uses it (no global active run shared
    between Dagster runs).
    """

    tracking_uri: str
    experiment_name: str = "housing_assets"
    artifact_location: str | None = None
    registered_model_name: str = "housing_price_model"

    def client(self):
        from mlflow import MlflowClient

        self._configure()
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def _configure(self) -> str:
        import mlflow

        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        if self.tracking_uri.startswith("sqlite:///"):
            os.makedirs(os.path.dirname(self.tracking_uri[len("sqlite:///") :]), exist_ok=True)
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        experiment = mlflow.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            return mlflow.create_experiment(
                self.experiment_name, artifact_location=self.artifact_location
            )
        return experiment.experiment_id

    @contextlib.contextmanager
    def start_run(
        self, run_name: str, tags: dict[str, str] | None = None, nested: bool = False
    ) -> Iterator[Any]:
        import mlflow

        experiment_id = self._configure()
        with mlflow.start_run(
            run_name=run_name, experiment_id=experiment_id, tags=tags, nested=nested
        ) as run:
            yield run


class WandbTracking(ConfigurableResource):
    """Weights & Biases runs; offline (local files, ``wandb sync`` later) unless a key is set."""

    project: str = "housing_assets"
    mode: str = "offline"
    dir: str = "."
    entity: str | None = None

    @contextlib.contextmanager
    def init(self, name: str, job_type: str, config: dict[str, Any]) -> Iterator[Any]:
        import wandb

        os.makedirs(self.dir, exist_ok=True)
        run = wandb.init(
            project=self.project,
            entity=self.entity,
            name=name,
            job_type=job_type,
            config=config,
            mode=self.mode,
            dir=self.dir,
            reinit="finish_previous",
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
        )
        try:
            yield run
        finally:
            run.finish()
