"""Experiment tracking resources: MLflow (runs + model registry) and Weights & Biases."""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from types import SimpleNamespace
from typing import Any

from dagster import ConfigurableResource, DagsterEventType, InitResourceContext
from pydantic import PrivateAttr

# Settings that keep a W&B run cheap: no system metrics, console capture or machine scan.
_WANDB_SETTINGS = dict(
    silent=True, console="off", x_disable_stats=True, x_disable_meta=True, save_code=False
)


def evidence_group(dagster_run_id: str) -> str:
    """The W&B group of one Dagster run's evidence runs (imputation, K, leaderboard, model)."""
    return f"dagster-{dagster_run_id[:8]}"


def parent_run_name(job_name: str, asset_selection) -> str:
    """What a Dagster run is called in MLflow: its job, or for an ad-hoc selection (UI, CLI
    `--select`) the assets it materializes."""
    if not job_name.startswith("__"):
        return job_name
    assets = sorted(key.to_user_string() for key in asset_selection or ())
    return f"assets: {', '.join(assets)}" if assets else "ad-hoc assets"


class MlflowTracking(ConfigurableResource):
    """MLflow tracking and registry store, through dagster-mlflow.

    For each Dagster run that uses it, dagster-mlflow's ``MlFlow`` opens one parent MLflow run
    (tagged ``dagster_run_id``, named after the job or the selected assets); every asset's run
    (:meth:`start_run`) is nested under it, and the parent ends FINISHED, or FAILED if any step
    of the Dagster run failed, when the run's resources are torn down. The resource is built per
    run, so two runs in one process get two parent runs. MLflow (and dagster_mlflow, which
    imports it) is imported only when a run starts, not when the code location loads.
    """

    tracking_uri: str
    experiment_name: str = "housing_assets"
    artifact_location: str | None = None
    registered_model_name: str = "housing_price_model"
    _parent_run_id: str | None = PrivateAttr(default=None)

    @contextlib.contextmanager
    def yield_for_execution(self, context: InitResourceContext) -> Iterator[MlflowTracking]:
        import mlflow
        from dagster_mlflow.resources import MlFlow

        self._configure()  # the experiment exists, with its artifact location, before MlFlow
        run = context.dagster_run
        name = parent_run_name(run.job_name, run.asset_selection) if run else "dagster run"
        tracking = MlFlow(
            SimpleNamespace(  # the parts of an init context that MlFlow reads
                log=context.log,
                run_id=context.run_id,
                dagster_run=SimpleNamespace(job_name=name),
                resource_config={
                    "experiment_name": self.experiment_name,
                    "mlflow_tracking_uri": self.tracking_uri,
                    "extra_tags": {"dagster_job": run.job_name if run else ""},
                },
            )
        )
        self._parent_run_id = tracking.mlflow_run_id or mlflow.active_run().info.run_id
        failed = False
        try:
            yield self
        except BaseException:
            failed = True
            raise
        finally:
            if context.instance is not None and context.run_id:
                failures = context.instance.all_logs(
                    context.run_id, of_type=DagsterEventType.STEP_FAILURE
                )
                failed = failed or bool(failures)
            while (active := mlflow.active_run()) and active.info.run_id != self._parent_run_id:
                mlflow.end_run("FAILED")  # a nested run left open by an interrupted step
            tracking.end_run(status="FAILED" if failed else "FINISHED")
            self._parent_run_id = None

    def client(self):
        """A client on this resource's store; touches no process-wide MLflow setting."""
        from mlflow import MlflowClient

        self._ensure_store()
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def _ensure_store(self) -> None:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        if self.tracking_uri.startswith("sqlite:///"):
            os.makedirs(os.path.dirname(self.tracking_uri[len("sqlite:///") :]), exist_ok=True)

    def _configure(self) -> str:
        """For the run's duration (dagster-mlflow's fluent runs and ``log_model`` read MLflow's
        process-wide URIs): point them at this store; make sure the experiment exists."""
        import mlflow

        self._ensure_store()
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        experiment = mlflow.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            return mlflow.create_experiment(
                self.experiment_name, artifact_location=self.artifact_location
            )
        return experiment.experiment_id

    @contextlib.contextmanager
    def start_run(self, run_name: str, tags: dict[str, str] | None = None) -> Iterator[Any]:
        """An MLflow run nested under the active one (the Dagster run's parent run, or the
        asset's run for its trials); a top-level run outside a Dagster run."""
        import mlflow

        experiment_id = self._configure()
        with mlflow.start_run(
            run_name=run_name,
            experiment_id=experiment_id,
            tags=tags,
            nested=mlflow.active_run() is not None,
        ) as run:
            yield run


class WandbTracking(ConfigurableResource):
    """Weights & Biases runs; offline (local files, ``wandb sync`` later) unless a key is set."""

    project: str = "housing_assets"
    mode: str = "offline"
    dir: str = "."
    entity: str | None = None

    def _init(self, **kwargs):
        import wandb

        os.makedirs(self.dir, exist_ok=True)
        return wandb.init(
            project=self.project,
            entity=self.entity,
            mode=self.mode,
            dir=self.dir,
            settings=wandb.Settings(**_WANDB_SETTINGS),
            **kwargs,
        )

    @contextlib.contextmanager
    def init(
        self, name: str, job_type: str, config: dict[str, Any], group: str | None = None
    ) -> Iterator[Any]:
        run = self._init(
            name=name, job_type=job_type, config=config, group=group, reinit="create_new"
        )
        try:
            yield run
        finally:
            run.finish()

    def log_evidence(
        self,
        name: str,
        job_type: str,
        config: Mapping[str, Any],
        *,
        tables: Mapping[str, Any] = {},  # noqa: B006 (read only)
        figures: Mapping[str, Any] = {},  # noqa: B006 (read only)
        summary: Mapping[str, Any] = {},  # noqa: B006 (read only)
        group: str | None = None,
    ) -> None:
        """One W&B run holding a step's evidence: DataFrames as tables, matplotlib figures as
        images, numbers as its summary."""
        import wandb

        with self.init(name, job_type, dict(config), group=group) as run:
            logged = {k: wandb.Table(dataframe=v.astype(str)) for k, v in tables.items()}
            logged |= {k: wandb.Image(fig) for k, fig in figures.items()}
            if logged:
                run.log(logged)
            run.summary.update(dict(summary))

    @contextlib.contextmanager
    def trial_runs(self, group: str, config: Mapping[str, Any]) -> Iterator[TrialRuns]:
        """A W&B run per tuning trial, all in one ``group`` (W&B's sweep views: grouping,
        parallel coordinates, parameter importance work on the group's runs). The runs are
        written by a background thread, so the search does not wait for W&B; on exit, every
        trial has been written (or its error recorded in ``errors``)."""
        runs = TrialRuns(lambda **kw: self._init(group=group, job_type="trial", **kw), config)
        runs.start()
        try:
            yield runs
        finally:
            runs.close()


class TrialRuns(threading.Thread):
    """Writes one W&B run per trial from a queue (see :meth:`WandbTracking.trial_runs`)."""

    def __init__(self, init: Callable[..., Any], config: Mapping[str, Any]):
        super().__init__(name="wandb-trials", daemon=True)
        self._init, self._config = init, dict(config)
        self._pending: queue.Queue = queue.Queue()
        self.errors: list[str] = []  # tracking never stops the search: failures are recorded
        self.written = 0

    def log(self, name: str, params: dict[str, Any], summary: dict[str, Any]) -> None:
        self._pending.put((name, params, summary))

    def run(self) -> None:
        while (item := self._pending.get()) is not None:
            name, params, summary = item
            try:
                run = self._init(name=name, config={**self._config, **params}, reinit="create_new")
                run.summary.update(summary)
                run.finish()
                self.written += 1
            except Exception as exc:
                self.errors.append(f"{name}: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        self._pending.put(None)
        self.join()
