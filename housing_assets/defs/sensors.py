"""The retraining sensors: new landing batches -> validate -> accept or quarantine -> one
retraining run (refit with the stored choices); a retrain whose challenger fails the gate or
whose batch drifted -> one retuning run (the whole search)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunStatusSensorContext,
    SensorEvaluationContext,
    SkipReason,
    run_status_sensor,
    sensor,
)

from housing_assets.defs.jobs import RETRAIN_ASSETS, housing_pipeline_job, retrain_job
from housing_assets.io.landing import ACCEPTED, QUARANTINE, Batch, BatchChangedError, Landing
from housing_assets.ml.batches import row_keys
from housing_assets.ml.parsing import parse_payload
from housing_assets.ml.schema import DataValidationError, validate_raw
from housing_assets.resources.source import HousingSource

CURSOR_MEMORY = 5000  # sha256s of processed batches kept in the cursor


def _interval_s() -> int:
    """Dagster's minimum interval for a tick every HOUSING_SENSOR_INTERVAL_S (default 30) s.

    The daemon looks at sensors in a 5 s loop and skips a sensor whose last tick began even a
    moment less than its minimum interval ago: asking for exactly 5 ticked every 10 s (measured).
    One second of slack keeps the cadence asked for."""
    return max(1, int(os.environ.get("HOUSING_SENSOR_INTERVAL_S", "30")) - 1)


@dataclass
class SensorCursor:
    """What the sensor remembers between ticks: the sha256s of the batches it has processed (to
    spot duplicates) and the names in ``accepted/`` that a run was requested for. A batch in
    ``accepted/`` missing from ``requested`` was moved by a tick that failed before it returned
    (say, a storage error on a later batch): the next tick requests its run."""

    processed: list[str] = field(default_factory=list)
    requested: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, text: str | None, landing: Landing) -> SensorCursor:
        data = json.loads(text) if text else None
        if isinstance(data, dict):
            return cls(data["processed"], set(data["requested"]))
        # A new sensor, or the cursor of an older version (a list of sha256s): batches already
        # in accepted/ are part of the data and are not retrained for on their own.
        return cls(data or [], set(landing.accepted_names()))

    def dump(self) -> str:
        return json.dumps(
            {"processed": self.processed[-CURSOR_MEMORY:], "requested": sorted(self.requested)}
        )


def parse_batch(batch: Batch) -> tuple[pd.DataFrame | None, str | None]:
    """The batch's rows, or why it cannot be trained on (a reason naming it). Any failure to
    parse counts, not only validation errors: one bad file must never stop the others."""
    try:
        frame = parse_payload(batch.payload, batch.name)
        validate_raw(frame, batch.name)
    except DataValidationError as exc:
        return None, str(exc)
    except Exception as exc:
        return None, f"{batch.name}: could not be parsed ({type(exc).__name__})"
    return frame, None


def known_row_keys(housing_source: HousingSource, log) -> set[int]:
    """Row keys of the data a retrain would use now (base dataset + accepted batches); empty,
    with a warning, if the base cannot be read (then only identical files are spotted)."""
    try:
        return set(row_keys(housing_source.load().frame).tolist())
    except Exception as exc:
        log.warning(
            f"could not read the current data to spot re-sent rows ({type(exc).__name__}: "
            f"{exc}); only identical files are recognised this tick"
        )
        return set()


def retrain_run_config() -> dict:
    """Run config for sensor-triggered runs: HOUSING_RETRAIN_CONFIG names a YAML file (for
    example configs/smoke.yaml); unset means the defaults."""
    path = os.environ.get("HOUSING_RETRAIN_CONFIG")
    return yaml.safe_load(Path(path).read_text()) if path else {}


def _latest_metadata(instance, asset: str) -> dict | None:
    event = instance.get_latest_materialization_event(AssetKey(asset))
    if event is None or event.asset_materialization is None:
        return None
    return {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}


def retrain_request(instance) -> tuple[str, dict]:
    """(job, run config) for new batches: ``retrain_job`` with the stored choices pinned (the
    imputation strategy beside the median baseline its check needs, and K), or the whole
    pipeline when nothing has been tuned yet."""
    config = retrain_run_config()
    if _latest_metadata(instance, "tuned_params") is None:
        return housing_pipeline_job.name, config
    ops = {k: v for k, v in config.get("ops", {}).items() if k in RETRAIN_ASSETS}
    imputation, geo = (
        _latest_metadata(instance, a) or {} for a in ("imputed_housing", "geo_features")
    )
    if strategy := imputation.get("chosen_strategy"):
        pinned = ops.setdefault("imputed_housing", {}).setdefault("config", {})
        pinned["strategies"] = sorted({strategy, "median"})
    if k := geo.get("chosen_k"):
        ops.setdefault("geo_features", {}).setdefault("config", {})["k_grid"] = [int(k)]
    return retrain_job.name, {"ops": ops}


@sensor(
    jobs=[retrain_job, housing_pipeline_job],
    minimum_interval_seconds=_interval_s(),
    default_status=DefaultSensorStatus.RUNNING,
    description="Validates each new batch in the landing zone; accepted batches trigger one "
    "retraining run (refit with the stored choices; the whole pipeline if nothing is tuned "
    "yet), bad ones are quarantined.",
)
def new_batch_sensor(context: SensorEvaluationContext, housing_source: HousingSource):
    if not housing_source.landing_url:
        return SkipReason("no landing zone configured (HOUSING_LANDING_URL)")
    landing = housing_source.landing()
    cursor = SensorCursor.load(context.cursor, landing)
    seen = set(cursor.processed)
    accepted: list[tuple[str, str]] = []
    for name in landing.accepted_names():
        if name not in cursor.requested:
            sha256 = landing.read(name, ACCEPTED).sha256
            accepted.append((name, sha256))
            cursor.processed.append(sha256)
            seen.add(sha256)
            context.log.warning(
                f"{ACCEPTED}/{name} was accepted by an interrupted tick: retraining"
            )
    known: set[int] | None = None  # rows already in the data, read once a batch needs it
    for name in landing.incoming():
        try:
            batch = landing.read(name)
        except Exception as exc:  # this file only: the others are still processed
            context.log.error(
                f"{name}: could not be read ({type(exc).__name__}); left in place, "
                "tried again at the next tick"
            )
            continue
        if batch.sha256 in seen:
            frame, problem = (
                None,
                (
                    f"{name}: identical to a batch already processed (sha256 {batch.sha256}); "
                    "nothing new to train on"
                ),
            )
        else:
            frame, problem = parse_batch(batch)
        if frame is not None:
            if known is None:
                known = known_row_keys(housing_source, context.log)
            new_keys = sorted(set(row_keys(frame).tolist()) - known)
            if not new_keys:
                problem = (
                    f"{name}: all {len(frame)} rows are already in the data (the base dataset "
                    "or accepted batches); nothing new to train on"
                )
        try:
            where = landing.move(batch, QUARANTINE if problem else ACCEPTED, reason=problem)
        except BatchChangedError:
            context.log.warning(f"{name}: changed while being read; left for the next tick")
            continue
        if problem:
            context.log.warning(f"quarantined {name} as {QUARANTINE}/{where}: {problem}")
        else:
            known |= set(new_keys)
            rows_sha = hashlib.sha256(np.asarray(new_keys, dtype=np.uint64).tobytes()).hexdigest()
            accepted.append((where, rows_sha))
            context.log.info(
                f"accepted {name} as {ACCEPTED}/{where}: {len(new_keys)} new of {len(frame)} rows"
            )
        if batch.sha256 not in seen:
            cursor.processed.append(batch.sha256)
            seen.add(batch.sha256)
    cursor.requested |= {name for name, _ in accepted}
    context.update_cursor(cursor.dump())
    if not accepted:
        return SkipReason("no new valid batch")
    job_name, run_config = retrain_request(context.instance)
    return RunRequest(  # the key names the new rows: the same rows never start a second run
        run_key="batches-" + "-".join(sha[:12] for _, sha in accepted),
        job_name=job_name,
        run_config=run_config,
        tags={"housing/batches": ",".join(name for name, _ in accepted)},
    )


def retune_reasons(instance, run_id: str) -> list[str]:
    """Why a finished retraining run calls for the whole search again (empty: it does not)."""
    reasons = []
    registered = instance.get_latest_materialization_event(AssetKey("registered_model"))
    if registered is not None and registered.run_id == run_id:
        metadata = registered.asset_materialization.metadata
        if not getattr(metadata.get("promoted"), "value", True):
            reason = getattr(metadata.get("promotion_reason"), "value", "")
            reasons.append(f"the refitted challenger failed the promotion gate ({reason})")
    for record in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = record.dagster_event.event_specific_data
        if evaluation.check_name == "batch_drift" and not evaluation.passed:
            reasons.append("the new batch drifted from the training data (batch_drift)")
    return reasons


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    monitored_jobs=[retrain_job],
    request_job=housing_pipeline_job,
    default_status=DefaultSensorStatus.RUNNING,
    description="After a retrain whose challenger failed the gate or whose batch drifted: one "
    "retuning run of the whole pipeline (imputation, K, family, hyper-parameters re-chosen).",
)
def retune_sensor(context: RunStatusSensorContext):
    run = context.dagster_run
    reasons = retune_reasons(context.instance, run.run_id)
    if not reasons:
        return SkipReason(f"retrain {run.run_id[:8]} needs no retune")
    context.log.info(f"retune after {run.run_id[:8]}: " + "; ".join(reasons))
    return RunRequest(
        run_key=f"retune-after-{run.run_id}",
        run_config=retrain_run_config(),
        tags={"housing/retune_reason": "; ".join(reasons)[:1000]},
    )
