"""Experiment tracking resources: MLflow (runs + model registry) and Weights & Biases."""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import os
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from dagster import ConfigurableResource, DagsterEventType, InitResourceContext
from pydantic import PrivateAttr

from housing_assets.io.mlflow_store import create_from_schema_cache
from housing_assets.reports.evidence import Evidence, MlflowRecord

if TYPE_CHECKING:
    import pandas as pd

# Settings that keep a W&B run cheap: no system metrics, console capture or machine scan.
_WANDB_SETTINGS = dict(
    silent=True, console="off", x_disable_stats=True, x_disable_meta=True, save_code=False
)


def evidence_group(dagster_run_id: str) -> str:
    """The W&B group of one Dagster run's evidence runs (imputation, K, leaderboard, model)."""
    return f"dagster-{short_run_id(dagster_run_id)}"


def parent_run_name(job_name: str, asset_selection) -> str:
    """What a Dagster run is called in MLflow: its job, or for an ad-hoc selection (UI, CLI
    `--select`) the assets it materializes."""
    if not job_name.startswith("__"):
        return job_name
    assets = sorted(key.to_user_string() for key in asset_selection or ())
    return f"assets: {', '.join(assets)}" if assets else "ad-hoc assets"


class MlflowTracking(ConfigurableResource):
    """MLflow tracking and registry store, through dagster-mlflow.

    For each Dagster run that logs to it, dagster-mlflow's ``MlFlow`` opens one parent MLflow run
    (tagged ``dagster_run_id``, named after the job or the selected assets); every asset's run
    (:meth:`start_run`) is nested under it, and the parent ends FINISHED, or FAILED if any step
    of the Dagster run failed, when the run's resources are torn down. The resource is built per
    run, so two runs in one process get two parent runs.

    The parent run opens when an asset first logs, in the step's thread (MLflow's active run is
    thread-local): a run that never logs to MLflow opens no parent run. (Setting the store up in
    a background thread while the first steps computed saved ~1 s, and broke a run: the thread's
    first import of ``sqlalchemy.orm`` raced Dagster's own SQLAlchemy calls in the step thread,
    "partially initialized module 'sqlalchemy.orm.exc'". Imports stay in one thread.)
    """

    tracking_uri: str
    experiment_name: str = "housing_assets"
    artifact_location: str | None = None
    registered_model_name: str = "housing_price_model"
    _init_context: Any = PrivateAttr(default=None)
    _parent: Any = PrivateAttr(default=None)  # dagster-mlflow's MlFlow, once opened
    _parent_run_id: str | None = PrivateAttr(default=None)

    @contextlib.contextmanager
    def yield_for_execution(self, context: InitResourceContext) -> Iterator[MlflowTracking]:
        self._init_context = context
        failed = False
        try:
            yield self
        except BaseException:
            failed = True
            raise
        finally:
            try:
                if self._parent is not None:
                    self._end_parent_run(context, failed)
            finally:
                self._init_context = self._parent = self._parent_run_id = None

    def _open_parent_run(self) -> None:
        import mlflow
        from dagster_mlflow.resources import MlFlow

        self._configure()  # the experiment exists, with its artifact location, before MlFlow
        context = self._init_context
        run = context.run
        name = parent_run_name(run.job_name, run.asset_selection) if run else "dagster run"
        self._parent = MlFlow(
            SimpleNamespace(  # the parts of an init context that MlFlow reads
                log=context.log,
                run_id=run.run_id if run else None,
                dagster_run=SimpleNamespace(job_name=name),
                resource_config={
                    "experiment_name": self.experiment_name,
                    "mlflow_tracking_uri": self.tracking_uri,
                    "extra_tags": {"dagster_job": run.job_name if run else ""},
                },
            )
        )
        self._parent_run_id = self._parent.mlflow_run_id or mlflow.active_run().info.run_id

    def _end_parent_run(self, context: InitResourceContext, failed: bool) -> None:
        import mlflow

        if context.instance is not None and context.run is not None:
            failures = context.instance.all_logs(
                context.run.run_id, of_type=DagsterEventType.STEP_FAILURE
            )
            failed = failed or bool(failures)
        while (active := mlflow.active_run()) and active.info.run_id != self._parent_run_id:
            mlflow.end_run("FAILED")  # a nested run left open by an interrupted step
        self._parent.end_run(status="FAILED" if failed else "FINISHED")

    def _open_parent_if_in_run(self) -> None:
        if self._init_context is not None and self._parent is None:
            self._open_parent_run()

    def client(self):
        """A client on this resource's store; touches no process-wide MLflow setting."""
        from mlflow import MlflowClient

        self._ensure_store()
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def _ensure_store(self) -> None:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        if self.tracking_uri.startswith("sqlite:///"):
            folder = os.path.dirname(self.tracking_uri[len("sqlite:///") :])
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as exc:
                raise RuntimeError(
                    f"The MLflow store {self.tracking_uri} cannot be created: its folder "
                    f"{folder} is not usable ({exc.strerror}). Set MLFLOW_TRACKING_URI or "
                    "HOUSING_DATA_DIR to a writable place."
                ) from exc
            create_from_schema_cache(self.tracking_uri)  # ~2 s of MLflow migrations saved

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

        self._open_parent_if_in_run()
        experiment_id = self._configure()
        with mlflow.start_run(
            run_name=run_name,
            experiment_id=experiment_id,
            tags=tags,
            nested=mlflow.active_run() is not None,
        ) as run:
            yield run


class WandbTracking(ConfigurableResource):
    """Weights & Biases runs; offline (local files, ``wandb sync`` later) unless a key is set.

    Within a Dagster run, every W&B run the steps ask for (evidence, one per trial) is written
    by one background thread, in order, so a step does not wait for W&B; the run's teardown
    waits for the last one and logs a warning for any that failed (tracking never fails a step).
    Outside a Dagster run they are written before the call returns.
    """

    project: str = "housing_assets"
    mode: str = "offline"
    dir: str = "."
    entity: str | None = None
    _writer: SerialWriter | None = PrivateAttr(default=None)

    @contextlib.contextmanager
    def yield_for_execution(self, context: InitResourceContext) -> Iterator[WandbTracking]:
        self._writer = SerialWriter("wandb-writer")
        try:
            yield self
        finally:
            writer, self._writer = self._writer, None
            writer.close()
            for error in writer.errors:
                context.log.warning(f"A W&B run was not written: {error}")

    def _init(self, *, requirements: bool = True, **kwargs):
        """``requirements``: W&B lists every installed package into the run (0.1 s of CPU a
        run); trial runs skip it, their group's evidence runs hold it."""
        import wandb

        os.makedirs(self.dir, exist_ok=True)
        return wandb.init(
            project=self.project,
            entity=self.entity,
            mode=self.mode,
            dir=self.dir,
            settings=wandb.Settings(**_WANDB_SETTINGS, x_save_requirements=requirements),
            **kwargs,
        )

    @contextlib.contextmanager
    def init(
        self, name: str, job_type: str, config: dict[str, Any], group: str | None = None
    ) -> Iterator[Any]:
        """One W&B run, written in the caller's thread."""
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
        tables: Mapping[str, pd.DataFrame] = {},  # noqa: B006 (read only)
        images: Mapping[str, bytes] = {},  # noqa: B006 (read only)
        summary: Mapping[str, Any] = {},  # noqa: B006 (read only)
        group: str | None = None,
    ) -> None:
        """One W&B run holding a step's evidence: DataFrames as tables, PNG images (see
        ``plots.to_png``), numbers as its summary."""
        import PIL.Image  # imported in the caller's thread (see _FIRST_WANDB_RUN)
        import wandb

        as_text = {k: v.astype(str) for k, v in tables.items()}  # a copy: the caller may go on
        config, summary = dict(config), dict(summary)

        def write() -> None:
            with self.init(name, job_type, config, group=group) as run:
                logged = {k: wandb.Table(dataframe=v) for k, v in as_text.items()}
                logged |= {
                    k: wandb.Image(PIL.Image.open(io.BytesIO(png))) for k, png in images.items()
                }
                if logged:
                    run.log(logged)
                run.summary.update(summary)

        self._write(write, name)

    def _write(self, write: Callable[[], Any], name: str) -> None:
        if self._writer is None:  # outside a Dagster run: now, and errors raise
            write()
        else:
            _submit_wandb_run(self._writer, write, name)

    @contextlib.contextmanager
    def trial_runs(self, group: str, config: Mapping[str, Any]) -> Iterator[TrialRuns]:
        """A W&B run per tuning trial, all in one ``group`` (W&B's sweep views: grouping,
        parallel coordinates, parameter importance work on the group's runs). The runs are
        written by a background thread, so the search does not wait for W&B; on exit, every
        trial has been written (or its error recorded in ``errors``)."""
        own = self._writer is None
        writer = SerialWriter("wandb-trials") if own else self._writer
        init = functools.partial(self._init, group=group, job_type="trial", requirements=False)
        runs = TrialRuns(writer, init, config)
        try:
            yield runs
        finally:
            runs.wait()
            if own:
                writer.close()


# On its first run in a process, W&B imports more of itself and builds its pydantic models
# (~120 `ast.parse` calls); done in a background thread while another thread parses Python
# source or imports, that failed here on Python 3.11.7 ("SystemError: AST constructor recursion
# depth mismatch", or a partially initialized module). So the first W&B run of a process is
# written in the caller's thread, and only later ones (none of that work left) in the background.
_FIRST_WANDB_RUN = threading.Lock()
_wandb_warm = threading.Event()


def _submit_wandb_run(writer: SerialWriter, write: Callable[[], Any], name: str) -> Future:
    if not _wandb_warm.is_set():
        with _FIRST_WANDB_RUN:
            if not _wandb_warm.is_set():  # nothing is queued yet: only warm runs are
                future = writer.run_here(write, name)
                if future.exception() is None:
                    _wandb_warm.set()
                return future
    return writer.submit(write, name)


def _failure(name: str, exc: BaseException) -> str:
    return f"{name}: {type(exc).__name__}: {exc}"


class SerialWriter:
    """One background thread that runs submitted jobs one at a time, in order; a job's error
    is kept in its future and in ``errors``."""

    def __init__(self, name: str):
        self._jobs: queue.Queue = queue.Queue()
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], Any], name: str) -> Future:
        future: Future = Future()
        self._jobs.put((job, name, future))
        return future

    def run_here(self, job: Callable[[], Any], name: str) -> Future:
        """Run ``job`` in the caller's thread, its outcome kept as for a submitted one."""
        future: Future = Future()
        self._run(job, name, future)
        return future

    def _run(self, job: Callable[[], Any], name: str, future: Future) -> None:
        try:
            future.set_result(job())
        except Exception as exc:
            self.errors.append(_failure(name, exc))
            future.set_exception(exc)

    def _work(self) -> None:
        while (item := self._jobs.get()) is not None:
            self._run(*item)

    def close(self) -> None:
        """Wait for every submitted job, then stop the thread."""
        self._jobs.put(None)
        self._thread.join()


class TrialRuns:
    """Writes one W&B run per trial through a :class:`SerialWriter` (see
    :meth:`WandbTracking.trial_runs`)."""

    def __init__(self, writer: SerialWriter, init: Callable[..., Any], config: Mapping[str, Any]):
        self._writer, self._init, self._config = writer, init, dict(config)
        self._futures: list[tuple[str, Future]] = []
        self.errors: list[str] = []  # tracking never stops the search: failures are recorded
        self.written = 0

    def log(self, name: str, params: dict[str, Any], summary: dict[str, Any]) -> None:
        config, summary = {**self._config, **params}, dict(summary)

        def write() -> None:
            run = self._init(name=name, config=config, reinit="create_new")
            run.summary.update(summary)
            run.finish()

        self._futures.append((name, _submit_wandb_run(self._writer, write, name)))

    def wait(self) -> None:
        """Wait until every logged trial is written; count them and record the failures."""
        for name, future in self._futures:
            if (exc := future.exception()) is None:  # waits for the trial's run
                self.written += 1
            else:
                self.errors.append(_failure(name, exc))
        self._futures = []


def short_run_id(dagster_run_id: str) -> str:
    return dagster_run_id[:8]


def dagster_metadata(evidence: Evidence) -> dict[str, Any]:
    """Evidence as Dagster metadata: tables as Markdown, figures inline, JSON as JSON."""
    from dagster import MetadataValue

    metadata: dict[str, Any] = dict(evidence.values)
    metadata |= {k: MetadataValue.md(v) for k, v in evidence.markdown.items()}
    metadata |= {k: MetadataValue.json(v) for k, v in evidence.json.items()}
    for name, table in evidence.tables.items():
        floatfmt = evidence.table_formats.get(name, ",.2f")
        metadata[name] = MetadataValue.md(table.to_markdown(index=False, floatfmt=floatfmt))
    for name, png in evidence.figures.items():
        encoded = base64.b64encode(png).decode()
        metadata[name] = MetadataValue.md(f"![{name}](data:image/png;base64,{encoded})")
    return metadata


class Tracking(ConfigurableResource):
    """Writes a step's :class:`Evidence` everywhere a person looks, in one call: the asset's
    Dagster metadata, one MLflow run (nested under the Dagster run's) and one W&B run (in the
    Dagster run's group). Tracking errors in W&B never fail a step (see WandbTracking)."""

    mlflow: MlflowTracking
    wandb: WandbTracking

    def publish(self, context, evidence: Evidence) -> None:
        if evidence.mlflow is not None:
            self.log_mlflow(evidence.mlflow)
        if evidence.wandb:
            self.wandb.log_evidence(
                f"{evidence.kind}-{short_run_id(context.run_id)}",
                evidence.kind,
                evidence.config,
                tables={**evidence.tables, **evidence.wandb_tables},
                images=evidence.figures,
                summary=evidence.wandb_summary(),
                group=evidence_group(context.run_id),
            )
        context.add_output_metadata(dagster_metadata(evidence))

    def log_mlflow(self, record: MlflowRecord) -> None:
        with self.mlflow.start_run(record.run_name, tags=record.tags or None):
            _log_to_active_run(record)

    @contextlib.contextmanager
    def search(self, context, family: str, config: Mapping[str, Any]) -> Iterator[SearchLog]:
        """The tracking of one hyper-parameter search: a W&B summary run and a W&B run per
        trial (one group), an MLflow run with a nested run per trial."""
        study_name = f"housing-{family}-{short_run_id(context.run_id)}"
        params = {k: v for k, v in config.items() if v is not None}
        with (
            self.wandb.init(
                name=f"{study_name}-summary",
                job_type="tuning",
                config=dict(config),
                group=study_name,
            ) as wandb_run,
            self.wandb.trial_runs(group=study_name, config={"family": family}) as trial_runs,
            self.mlflow.start_run(f"tuned_params-{family}", tags={"family": family}),
        ):
            _log_to_active_run(MlflowRecord("", params=params))
            log = SearchLog(study_name, wandb_run, trial_runs, self.mlflow)
            yield log
        log.trial_runs_written, log.trial_run_errors = trial_runs.written, trial_runs.errors


def _log_to_active_run(record: MlflowRecord) -> None:
    import mlflow

    if record.params:
        mlflow.log_params(record.params)
    if record.metrics:
        mlflow.log_metrics(record.metrics)
    for artifact, text in record.texts.items():
        mlflow.log_text(text, artifact)


class SearchLog:
    """Logs each finished trial (W&B and MLflow) and the search's result."""

    def __init__(self, study_name: str, wandb_run, trial_runs: TrialRuns, mlflow: MlflowTracking):
        self.study_name, self._wandb_run, self._trials, self._mlflow = (
            study_name,
            wandb_run,
            trial_runs,
            mlflow,
        )
        self.trial_runs_written = 0
        self.trial_run_errors: list[str] = []
        self.wandb_dir = getattr(wandb_run, "dir", "")

    def trial_run_name(self, number: int) -> str:
        return f"{self.study_name}-trial-{number:03d}"

    def on_trial(self, trial) -> None:
        """For ``tune_params(on_trial=...)``: one W&B run and one nested MLflow run a trial."""
        numbers = {f"cv_{k}": v for k, v in trial.metrics.items() if not k.endswith("_std")}
        summary = {
            "trial": trial.number,
            "state": trial.state,
            "folds_run": trial.folds_run,
            "seconds": trial.seconds,
            **numbers,
        }
        self._trials.log(self.trial_run_name(trial.number), trial.params, summary)
        with self._mlflow.start_run(f"trial-{trial.number}", tags={"state": trial.state}):
            _log_to_active_run(
                MlflowRecord("", trial.params, {**numbers, "folds_run": trial.folds_run})
            )

    def record(self, record: MlflowRecord, best_trial: int, trials) -> None:
        """The search's result: into its MLflow run, and into its W&B summary run (the best
        scores, the best trial's run, every trial as a table)."""
        import wandb

        _log_to_active_run(record)
        self._wandb_run.summary.update(record.metrics)
        self._wandb_run.summary["best_trial"] = self.trial_run_name(best_trial)
        table = trials.drop(columns=["metrics"], errors="ignore").astype(str)
        self._wandb_run.log({"trials": wandb.Table(dataframe=table)})
