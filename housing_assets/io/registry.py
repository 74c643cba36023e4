"""Logging, registering and promoting the served model in the MLflow Model Registry."""

from __future__ import annotations

import importlib.metadata
import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

import housing_assets
from housing_assets.datasets import HousingSplit, RegisteredModel, TunedParams
from housing_assets.io.integrity import (
    ModelIntegrityError,
    record_model_digest,
    verify_model_version,
)
from housing_assets.io.redaction import redact_url
from housing_assets.io.served_model import PARAMS, PricePredictor
from housing_assets.ml.gate import GateDecision, GateRules, gate_decision
from housing_assets.ml.live_error import COVERAGE, LIVE_METRICS
from housing_assets.ml.schema import FEATURE_COLUMNS, TARGET
from housing_assets.ml.split import SPLIT_SCHEME
from housing_assets.reports.promotion_diff import DiffReport, Versions, data_batches, promotion_diff
from housing_assets.steps.final_model import FittedModel, RegistrationSettings, score_on_test

MODEL_NAME = "housing_price_model"
CHAMPION = "champion"
CHALLENGER = "challenger"
PACKAGES_AT_SERVING = ["scikit-learn", "lightgbm", "pandas", "numpy", "scipy", "cloudpickle"]


def pip_requirements() -> list[str]:
    """Exact versions of what unpickling the pipeline needs (no slow requirement inference)."""
    reqs = [f"mlflow=={importlib.metadata.version('mlflow')}"]
    reqs += [f"{name}=={importlib.metadata.version(name)}" for name in PACKAGES_AT_SERVING]
    return reqs


def package_code_path() -> str:
    """The package folder, shipped with the model so its custom transformers unpickle anywhere."""
    return str(Path(housing_assets.__file__).parent)


def model_description(
    family: str,
    params: dict,
    cv_metrics: dict[str, float],
    test_metrics: dict[str, float],
    spec_text: str,
    source_url: str,
    source_sha256: str,
    dagster_run_id: str,
    gate_text: str = "",
) -> str:
    from housing_assets.ml.metrics import METRIC_NAMES, format_metric

    rows = "\n".join(
        f"| {m} | {format_metric(m, cv_metrics.get(m, float('nan')))} | "
        f"{format_metric(m, test_metrics[m])} |"
        for m in METRIC_NAMES
    )
    params_text = "\n".join(f"- `{k}`: {v}" for k, v in sorted(params.items()))
    return f"""# housing_price_model: {family}

Predicts `median_house_value` from the 9 raw California Housing columns. Imputation, ratio
features, geographic cluster similarity, neighbour price encoding and one-hot encoding are all
inside the model (fitted on training rows only). Trained on log(price).

**Algorithm:** {family}

**Hyper-parameters** (Optuna TPE, cross-validated on training rows):
{params_text}

**Preprocessing:** `{spec_text}`

| metric | cross-validation (train) | test (hold-out, reported once) |
|---|---|---|
{rows}
{gate_text}
**Data:** `{source_url}` (sha256 `{source_sha256}`)

**Dagster run:** `{dagster_run_id}`
"""


def model_tags(
    family: str, test_metrics: dict[str, float], source_sha256: str, dagster_run_id: str
) -> dict[str, str]:
    return {
        "algorithm": family,
        "rmse": f"{test_metrics['rmse']:.1f}",
        "mape": f"{test_metrics['mape']:.3f}",
        "wmape": f"{test_metrics['wmape']:.3f}",
        "r2": f"{test_metrics['r2']:.4f}",
        "within_10pct": f"{test_metrics['within_10pct']:.2f}",
        "data_sha256": source_sha256,
        "dagster_run_id": dagster_run_id,
        "split_scheme": SPLIT_SCHEME,
    }


MAX_DESCRIPTION_CHARS = 5000  # model_versions.description in MLflow's SQL schema


def input_example(X: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    return X.dropna().head(n)


def gate_markdown(decision: GateDecision, forced: bool = False) -> str:
    """The gate's verdict and slice table for the version's description."""
    verdict = "promoted" if decision.promote or forced else "kept the champion"
    text = f"""
**Promotion gate** ({decision.rows} gate rows, never fitted on): {verdict}
{"(forced by configuration) " if forced and not decision.promote else ""}- {decision.reason}
"""
    table = decision.slices_markdown()
    if table:
        text += f"""
Slices with enough rows to count (wMAPE in %; `regressed`: worse by more than the bound). Every
slice, with RMSE, is in the run's `promotion_gate_slices.csv`.

{table}
"""
    return text


def within_description_limit(description: str, limit: int = MAX_DESCRIPTION_CHARS) -> str:
    """``description`` cut to what the registry stores (MLflow's column on PostgreSQL holds
    5,000 characters; SQLite does not enforce it), saying where the rest is."""
    if len(description) <= limit:
        return description
    note = "\n\n… (cut to the registry's limit: the run's artifacts hold the full report)\n"
    return description[: limit - len(note)] + note


def promotion_decision(
    gate_rows: pd.DataFrame,
    challenger: np.ndarray,
    champion: np.ndarray | None,
    rules: GateRules,
) -> GateDecision:
    """Promote when there is no champion, or when the challenger is no worse than the champion
    on the same gate rows (paired bootstrap intervals within the tolerances, no large slice
    regressed beyond its bound): see :func:`housing_assets.ml.gate.gate_decision`."""
    return gate_decision(gate_rows, gate_rows[TARGET].to_numpy(), challenger, champion, rules)


# MLflow error codes meaning "there is no such model or alias" (anything else is the registry
# failing, which must not be mistaken for a missing champion).
_NOT_THERE = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}


class AliasMissingError(LookupError):
    """The model or its alias does not exist (yet)."""


def aliased_version(client, model: str, alias: str) -> str:
    """The version that ``alias`` points to; :class:`AliasMissingError` saying what to do if none.
    Other registry failures (unreachable server, ...) propagate as they are."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model, alias).version)
    except MlflowException as exc:
        if exc.error_code not in _NOT_THERE:
            raise
        raise AliasMissingError(
            f"no version of {model!r} has the alias {alias!r} in {redact_url(client.tracking_uri)}: run the "
            "pipeline first (`make run`), or set MLFLOW_TRACKING_URI to the registry that has it"
        ) from exc


class RollbackError(RuntimeError):
    pass


def rollback_champion(
    client, name: str, reason: str, who: str, to_version: str | None = None
) -> tuple[str, str]:
    """Point ``champion`` back to ``to_version`` (default: the version that was champion before
    the current one) and record who, when and why on both versions. Returns (from, to)."""
    from datetime import UTC, datetime

    from mlflow.exceptions import MlflowException

    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        raise RollbackError(f"model '{name}' has no '{CHAMPION}' alias to roll back") from exc
    target = to_version or current.tags.get("previous_champion")
    if not target:
        raise RollbackError(
            f"{name} v{current.version} records no previous champion; name a version with --to"
        )
    try:
        client.get_model_version(name, str(target))
    except MlflowException as exc:
        raise RollbackError(f"{name} has no version {target}") from exc
    if str(target) == str(current.version):
        raise RollbackError(f"{name} v{target} is already the champion")
    _check_files(client, name, str(target))
    now = datetime.now(UTC).isoformat(timespec="seconds")
    client.set_registered_model_alias(name, CHAMPION, str(target))
    for key, value in {
        "rolled_back_at": now,
        "rolled_back_by": who,
        "rollback_reason": reason,
        "rolled_back_from": str(current.version),
    }.items():
        client.set_model_version_tag(name, str(target), key, value)
    for key, value in {"demoted_at": now, "demoted_by": who, "demotion_reason": reason}.items():
        client.set_model_version_tag(name, str(current.version), key, value)
    return str(current.version), str(target)


def _check_files(client, name: str, version: str) -> None:
    """Refuse to serve a version whose files no longer match their recorded digest."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="model-") as tmp:
        try:
            verify_model_version(client, name, version, tmp)
        except ModelIntegrityError as exc:
            raise RollbackError(f"{exc}; the champion stays where it is") from exc


class ModelRegistry:
    """The MLflow Model Registry through an explicit client: log and register a fitted model,
    read the champion, record the promotion decision. Nothing here sets MLflow's process-wide
    tracking or registry URI."""

    def __init__(self, client, name: str = MODEL_NAME):
        self.client = client
        self.name = name

    def log_and_register(
        self,
        model: PricePredictor,
        example: pd.DataFrame,
        description: str,
        tags: dict[str, str],
        params: dict,
        metrics: dict[str, float],
        texts: dict[str, str],
    ) -> tuple[str, str]:
        """Into the active MLflow run: tags, params, metrics, ``texts`` ({artifact: text}) and
        the model, registered as a new version with its description and tags, alias
        ``challenger``. Returns (version, MLflow run id)."""
        import mlflow
        from mlflow.models import infer_signature

        run = mlflow.active_run()
        mlflow.set_tags(tags)
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        for artifact, text in texts.items():
            mlflow.log_text(text, artifact)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=model,
            signature=infer_signature(example, model.predict(None, example), params=PARAMS),
            input_example=example,
            pip_requirements=pip_requirements(),
            code_paths=[package_code_path()],
            registered_model_name=self.name,
        )
        version = str(info.registered_model_version)
        record_model_digest(self.client, self.name, version)  # before any alias can name it
        self.client.update_model_version(
            self.name, version, description=within_description_limit(description)
        )
        for key, value in tags.items():
            self.client.set_model_version_tag(self.name, version, key, value)
        self.client.set_registered_model_alias(self.name, CHALLENGER, version)
        return version, run.info.run_id

    def champion_version(self) -> str | None:
        """The champion's version, None if there is none; other registry errors propagate (an
        unreachable registry is not "no champion", which would promote unchecked)."""
        try:
            return aliased_version(self.client, self.name, CHAMPION)
        except AliasMissingError:
            return None

    def champion_before_run(self, dagster_run_id: str) -> str | None:
        """The champion as it stood before the Dagster run ``dagster_run_id`` registered
        anything: the champion, or, when that run's own version already holds the alias, the
        champion it replaced (None if there was none)."""
        version = self.champion_version()
        if version is None:
            return None
        tags = self.client.get_model_version(self.name, version).tags
        if tags.get("dagster_run_id") == dagster_run_id:
            return tags.get("previous_champion") or None
        return version

    def log_live_error(self, version: str, table: pd.DataFrame, step: dict[str, int]) -> None:
        """Append ``table`` (one row per batch, ``ml.live_error.live_error_by_batch``) to the
        MLflow run of ``version`` as ``live_<metric>`` series, stepped by each batch's
        ordinal in the data (``step``), beside that run's ``test_<metric>``."""
        from mlflow.entities import Metric

        run_id = self.client.get_model_version(self.name, version).run_id
        now = int(time.time() * 1000)
        names = [n for n in (*LIVE_METRICS, COVERAGE) if n in table.columns]
        metrics = [
            Metric(f"live_{name}", float(row[name]), now, step[row["batch"]])
            for _, row in table.iterrows()
            for name in names
        ]
        self.client.log_batch(run_id, metrics=metrics)

    def load(self, version: str):
        """A version as an MLflow pyfunc model, fetched through this client's stores; its files
        are checked against the digest recorded at registration before anything is unpickled
        (:class:`~housing_assets.io.integrity.ModelIntegrityError` on a mismatch)."""
        import tempfile

        import mlflow

        with tempfile.TemporaryDirectory(prefix="model-") as tmp:
            local = verify_model_version(self.client, self.name, version, tmp)
            return mlflow.pyfunc.load_model(str(local))

    def versions(self, challenger: str, champion: str | None) -> Versions:
        """The two versions of a promotion report, with what the champion's run recorded: the
        batches of its data and its feature importances (None where it did not record them)."""
        batches, importances = None, None
        if champion is not None:
            run_id = self.client.get_model_version(self.name, champion).run_id
            config = yaml.safe_load(self._artifact_text(run_id, "model_config.yaml") or "{}")
            if "batches" in (config or {}):
                batches = frozenset(config["batches"])
            text = self._artifact_text(run_id, "feature_importances.csv")
            importances = pd.read_csv(io.StringIO(text)) if text else None
        return Versions(challenger, champion, batches, importances)

    def _artifact_text(self, run_id: str, path: str) -> str | None:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="artifact-") as tmp:
            try:
                local = self.client.download_artifacts(run_id, path, tmp)
            except Exception:  # an older version without it
                return None
            return Path(local).read_text()

    def log_report(self, report: DiffReport) -> None:
        """Into the active MLflow run (the challenger's): the report and its figures."""
        import tempfile

        import mlflow

        with tempfile.TemporaryDirectory(prefix="report-") as tmp:
            folder = Path(tmp) / "promotion_diff"
            folder.mkdir()
            (folder / "promotion_diff.md").write_text(report.markdown)
            for name, png in report.figures.items():
                (folder / f"{name}.png").write_bytes(png)
            mlflow.log_artifacts(str(folder), "promotion_diff")

    def split_scheme(self, version: str) -> str | None:
        """The split a version was registered under (None: before the gate split existed)."""
        return self.client.get_model_version(self.name, version).tags.get("split_scheme")

    def record_decision(
        self,
        version: str,
        promote: bool,
        reason: str,
        previous: str | None,
        evidence: str | None = None,
    ) -> list[str]:
        """Tag the decision (and ``evidence``, the gate's compact JSON); on promotion move
        ``champion`` (remembering the previous one). Returns the version's aliases."""
        verdict = ("promoted: " if promote else "kept champion: ") + reason
        self.client.set_model_version_tag(self.name, version, "promotion_decision", verdict)
        if evidence is not None:
            self.client.set_model_version_tag(self.name, version, "promotion_gate", evidence)
        if promote:
            if previous:
                self.client.set_model_version_tag(self.name, version, "previous_champion", previous)
            self.client.set_registered_model_alias(self.name, CHAMPION, version)
        return list(self.client.get_model_version(self.name, version).aliases)


@dataclass
class Registration:
    """What publishing a fitted model did: the new version, and the gate's decision."""

    model: RegisteredModel
    fitted: FittedModel  # with its test predictions (scored after the decision)
    promoted: bool
    reason: str
    description: str
    decision: GateDecision  # the gate's own verdict (``promoted`` may be forced)
    diff: DiffReport  # what the decision changes, against the champion


class GateSplitMissingError(RuntimeError):
    """The split has no gate rows: it was stored before the gate split existed."""


def gate_champion(
    registry: ModelRegistry,
    previous: str | None,
    split: HousingSplit,
    fitted: FittedModel,
    rules: GateRules,
) -> GateDecision:
    """The gate: challenger and champion on the same gate rows. A champion registered under
    another split scheme may have been fitted on these gate rows, so its score there would be
    flattering: the challenger then becomes the first champion of this scheme (recorded)."""
    if split.gate is None or fitted.gate_predictions is None:
        raise GateSplitMissingError(
            "train_test_split has no gate rows (stored before the gate split): materialize "
            "raw_housing and everything downstream again"
        )
    gate = split.gate
    champion_predictions = None
    unfair = None
    if previous:
        scheme = registry.split_scheme(previous)
        if scheme != SPLIT_SCHEME:
            unfair = (
                f"champion v{previous} was registered under split "
                f"{scheme or 'without a gate'}, not {SPLIT_SCHEME}, and may have been fitted on "
                "these gate rows: no fair comparison; the challenger becomes the first champion "
                "of this split"
            )
        else:
            champion = registry.load(previous)
            champion_predictions = np.asarray(champion.predict(gate[FEATURE_COLUMNS]), float)
    decision = promotion_decision(gate, fitted.gate_predictions, champion_predictions, rules)
    if unfair:
        decision.reason = unfair
    return decision


def publish_model(
    registry: ModelRegistry,
    split: HousingSplit,
    tuned: TunedParams,
    fitted: FittedModel,
    settings: RegistrationSettings,
    dagster_run_id: str,
) -> Registration:
    """Apply the promotion gate (the challenger against the current champion on the same gate
    rows), then score the challenger once on the test rows for its report, log and register it
    (inside the caller's active MLflow run) with its description, tags, metrics and config, and
    move ``champion`` when the gate passed."""
    previous = registry.champion_version()
    decision = gate_champion(registry, previous, split, fitted, settings.gate_rules())
    fitted_rows = pd.concat([split.train, split.gate])  # the rows it was fitted on or gated by
    promote, reason = decision.promote, decision.reason
    if settings.force_promote and not promote:
        promote, reason = True, f"forced by configuration ({reason})"
    fitted = score_on_test(fitted, split)  # after the decision: the one look at the test rows
    metrics, source = fitted.test_metrics, split.source
    description = model_description(
        tuned.family,
        tuned.params,
        tuned.cv_metrics,
        metrics,
        str(split.spec),
        source.url,
        source.sha256,
        dagster_run_id,
        gate_markdown(decision, forced=settings.force_promote),
    )
    model_config = {
        "family": tuned.family,
        "params": tuned.params,
        "feature_spec": vars(split.spec),
        "tuning_metric": tuned.metric,
        "features": FEATURE_COLUMNS,
        "target": TARGET,
        "target_transform": "log",
        "seeds": list(fitted.seeds),
        "data": source.as_dict(),
        "split_scheme": SPLIT_SCHEME,
        "batches": data_batches(fitted_rows),
        "intervals": {
            "method": "split conformal on |log price residual|, per ocean_proximity",
            "calibration_rows": fitted.intervals.summary() if fitted.intervals else {},
            "test_at_90": fitted.test_intervals,
        },
    }
    version, mlflow_run_id = registry.log_and_register(
        PricePredictor(fitted.pipeline, fitted.intervals),
        input_example(split.train[FEATURE_COLUMNS]),
        description,
        model_tags(tuned.family, metrics, source.sha256, dagster_run_id),
        {f"param_{k}": v for k, v in tuned.params.items()},
        {
            **{f"test_{k}": v for k, v in metrics.items()},
            **{f"cv_{k}": v for k, v in tuned.cv_metrics.items()},
            **{f"gate_{k}": v for k, v in decision.challenger_metrics.items()},
            **{f"test_interval90_{k}": v for k, v in (fitted.test_intervals or {}).items()},
        },
        {
            "model_config.yaml": yaml.safe_dump(model_config, sort_keys=False),
            "feature_importances.csv": fitted.importances.to_csv(index=False),
            "promotion_gate_slices.csv": decision.slices.to_csv(index=False),
        },
    )
    aliases = registry.record_decision(version, promote, reason, previous, decision.as_json())
    compared = previous if decision.champion_predictions is not None else None
    diff = promotion_diff(
        registry.versions(version, compared),
        decision,
        ("promoted: " if promote else "kept the champion: ") + reason,
        fitted_rows,
        split.gate,
        fitted.gate_predictions,
        decision.champion_predictions,
        fitted.importances,
    )
    registry.log_report(diff)
    model = RegisteredModel(
        name=registry.name,
        version=version,
        model_uri=f"models:/{registry.name}/{version}",
        run_id=mlflow_run_id,
        family=tuned.family,
        params=tuned.params,
        test_metrics=metrics,
        cv_metrics=tuned.cv_metrics,
        aliases=aliases,
    )
    return Registration(model, fitted, promote, reason, description, decision, diff)
