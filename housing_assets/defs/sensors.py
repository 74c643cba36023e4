"""The retraining sensors: new landing batches -> validate -> accept or quarantine -> one
retraining run (refit with the stored choices); a retrain whose challenger fails the gate or
whose batch drifted -> one retuning run (the whole search).

A tick's cost does not depend on how much data was accepted before: re-sent rows are spotted
against the landing zone's index of row keys (housing_assets/io/landing.py, RowKeyIndex), not
by re-reading the data, and the retrain's choices are read from the stored ``tuned_params``.
Files are hostile until parsed: each is bounded (``HOUSING_BATCH_MAX_MB`` decompressed,
``HOUSING_BATCH_MAX_ROWS`` rows), named in logs only in escaped, capped form, and one that
cannot be handled is left in place without stopping the others or the run request.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
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
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    run_status_sensor,
    sensor,
)

from housing_assets.datasets import TunedParams
from housing_assets.defs.jobs import (
    BATCHES_TAG,
    RETRAIN_ASSETS,
    housing_pipeline_job,
    retrain_job,
)
from housing_assets.io.landing import (
    ACCEPTED,
    QUARANTINE,
    Batch,
    BatchChangedError,
    KnownRows,
    Landing,
    RowKeyIndex,
    display_name,
)
from housing_assets.io.source import fetch
from housing_assets.ml.batches import distinct_row_keys
from housing_assets.ml.parsing import NO_LIMITS, ParseLimits, parse_payload
from housing_assets.ml.pipeline import FeatureSpec
from housing_assets.ml.schema import DataValidationError, validate_raw
from housing_assets.resources.io_managers import (
    AssetNotFoundError,
    CorruptAssetError,
    DatasetIOManager,
)
from housing_assets.resources.source import HousingSource
from housing_assets.settings import Settings
from housing_assets.settings import load as load_settings

CURSOR_MEMORY = 5000  # sha256s of processed batches kept in the cursor
DEFAULT_INTERVAL_S = 30
MAX_LOGGED_CHARS = 500  # an error message as a log line shows it


def batch_limits(environ: Mapping[str, str] | None = None) -> ParseLimits:
    """What one landing batch may cost: ``HOUSING_BATCH_MAX_MB`` of data once decompressed
    (default 50) and ``HOUSING_BATCH_MAX_ROWS`` data rows (default 100,000). A batch over
    either is quarantined with the reason, having been inflated or read only up to the limit."""
    settings = Settings.from_env(environ)
    return ParseLimits(
        max_bytes=int(settings.batch_max_mb * 1_000_000), max_rows=settings.batch_max_rows
    )


def one_line(text: str) -> str:
    """An error message safe for one log line: control characters escaped, length capped."""
    return display_name(text, MAX_LOGGED_CHARS)


@dataclass
class SensorCursor:
    """What the sensor remembers between ticks: the sha256s of the batches it has processed (to
    spot duplicates) and the names in ``accepted/`` that a run was requested for. A batch in
    ``accepted/`` missing from ``requested`` was moved by a tick that failed before it returned
    (say, a storage error after the move): the next tick requests its run."""

    processed: list[str] = field(default_factory=list)
    requested: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, text: str | None, landing: Landing) -> SensorCursor:
        if text:
            data = json.loads(text)
            return cls(data["processed"], set(data["requested"]))
        # A new sensor: batches already in accepted/ are part of the data, not retrained for.
        return cls([], set(landing.accepted_names()))

    def dump(self) -> str:
        return json.dumps(
            {"processed": self.processed[-CURSOR_MEMORY:], "requested": sorted(self.requested)}
        )


def parse_batch(
    batch: Batch, limits: ParseLimits = NO_LIMITS
) -> tuple[pd.DataFrame | None, str | None]:
    """The batch's rows, or why it cannot be trained on (a reason naming it, in the escaped,
    capped form of :func:`display_name`). Any failure to parse counts, not only validation
    errors: one bad file must never stop the others."""
    shown = display_name(batch.name)
    try:
        frame = parse_payload(batch.payload, batch.name, limits, label=shown)
        validate_raw(frame, shown)
    except DataValidationError as exc:
        return None, str(exc)
    except Exception as exc:
        return None, f"{shown}: could not be parsed ({type(exc).__name__})"
    return frame, None


def known_row_keys(
    housing_source: HousingSource, landing: Landing, index: RowKeyIndex, accepted: list[str], log
) -> KnownRows:
    """The keys of the rows a retrain would use now: the base dataset's (fetched to
    learn its sha256; parsed only the first time that content is seen) and the accepted
    batches' (from the index). A part that cannot be read is left out with a warning (then
    only identical files, or the other part's rows, are spotted this tick)."""
    parts = []
    try:
        base = fetch(
            housing_source.url,
            retries=housing_source.retries,
            timeout_s=housing_source.timeout_s,
            gcs=housing_source.gcs,
        )
        parts.append(
            index.base_keys(
                base.sha256, lambda: distinct_row_keys(parse_payload(base.payload, base.url))
            )
        )
    except Exception as exc:
        log.warning(
            f"could not read the base dataset to spot re-sent rows ({type(exc).__name__}: "
            f"{one_line(str(exc))}); its rows are not recognised this tick"
        )

    def batch_keys(name: str) -> np.ndarray:
        shown = f"{ACCEPTED}/{display_name(name)}"
        log.info(f"indexing the rows of {shown}")
        payload = landing.read(name, ACCEPTED).payload  # a storage error: tried next tick
        try:
            return distinct_row_keys(parse_payload(payload, name, label=shown))
        except DataValidationError as exc:  # indexed as holding no rows: not parsed each tick
            log.warning(f"{one_line(str(exc))}; raw_housing will fail on it until it is removed")
            return np.empty(0, dtype=np.uint64)

    try:
        parts.append(index.accepted_keys(accepted, batch_keys))
    except Exception as exc:
        log.warning(
            f"could not read the accepted batches' rows ({type(exc).__name__}: "
            f"{one_line(str(exc))}); they are not recognised this tick"
        )
    for problem in index.write_errors:
        log.warning(f"the row-key index could not be stored: {one_line(problem)}")
    index.write_errors.clear()
    return KnownRows(parts)


def retrain_run_config() -> dict:
    """Run config for sensor-triggered runs: HOUSING_RETRAIN_CONFIG names a YAML file (for
    example configs/smoke.yaml); unset means the defaults."""
    path = load_settings().retrain_config
    return yaml.safe_load(Path(path).read_text()) if path else {}


def stored_choices(io_manager: DatasetIOManager, log=None) -> FeatureSpec | None:
    """The feature choices of the stored ``tuned_params`` (its value, read through the IO
    manager: what the retrain's registered_model will refit with), or None when nothing usable
    is stored: never tuned, stored by a version that did not record its features, or corrupt
    (then the whole pipeline rebuilds it). A storage failure is raised: the tick fails and the
    next one requests the run (see :class:`SensorCursor`)."""
    try:
        tuned = io_manager.load(["tuned_params"])
    except AssetNotFoundError:
        return None
    except CorruptAssetError as exc:
        if log is not None:
            log.warning(f"tuned_params is unreadable ({one_line(str(exc))}): retuning")
        return None
    spec = getattr(tuned, "spec", None) if isinstance(tuned, TunedParams) else None
    if spec is None and log is not None:
        log.warning("tuned_params does not record the features it was tuned on: retuning")
    return spec


def retrain_request(io_manager: DatasetIOManager, log=None) -> tuple[str, dict]:
    """(job, run config) for new batches: ``retrain_job`` with the stored choices pinned (the
    imputation strategy beside the median baseline its check needs, and K; the family and
    hyper-parameters are the stored ``tuned_params`` that registered_model reads), or the whole
    pipeline when nothing has been tuned yet."""
    config = retrain_run_config()
    spec = stored_choices(io_manager, log)
    if spec is None:
        return housing_pipeline_job.name, config
    ops = {k: v for k, v in config.get("ops", {}).items() if k in RETRAIN_ASSETS}
    imputation = ops.setdefault("imputed_housing", {}).setdefault("config", {})
    imputation["strategies"] = sorted({spec.imputation_strategy, "median"})
    ops.setdefault("geo_features", {}).setdefault("config", {})["k_grid"] = [int(spec.n_clusters)]
    return retrain_job.name, {"ops": ops}


@dataclass
class _Tick:
    """One evaluation's state: what it accepted, and the rows the data holds (read once, when a
    batch first needs them)."""

    context: SensorEvaluationContext
    housing_source: HousingSource
    landing: Landing
    cursor: SensorCursor
    accepted_names: list[str]
    limits: ParseLimits
    seen: set[str] = field(default_factory=set)
    accepted: list[tuple[str, str]] = field(default_factory=list)
    known: KnownRows | None = None
    index: RowKeyIndex | None = None

    def __post_init__(self) -> None:
        self.seen = set(self.cursor.processed)
        self.index = RowKeyIndex(self.landing)

    def recover_interrupted(self) -> None:
        """Batches in accepted/ that no run was requested for (a tick failed after moving)."""
        for name in self.accepted_names:
            if name in self.cursor.requested:
                continue
            try:
                sha256 = self.landing.read(name, ACCEPTED).sha256
            except Exception as exc:
                self.context.log.error(
                    f"{ACCEPTED}/{display_name(name)}: could not be read "
                    f"({type(exc).__name__}); tried again at the next tick"
                )
                continue
            self.accepted.append((name, sha256))
            self.cursor.processed.append(sha256)
            self.seen.add(sha256)
            self.context.log.warning(
                f"{ACCEPTED}/{display_name(name)} was accepted by an interrupted tick: retraining"
            )

    def known_rows(self) -> KnownRows:
        if self.known is None:
            self.known = known_row_keys(
                self.housing_source,
                self.landing,
                self.index,
                self.accepted_names,
                self.context.log,
            )
        return self.known

    def process(self, name: str) -> None:
        """Accept or quarantine one incoming file; raises only if it must stay in place."""
        log, shown = self.context.log, display_name(name)
        batch = self.landing.read(name)
        keys = None
        if batch.sha256 in self.seen:
            problem = (
                f"{shown}: identical to a batch already processed (sha256 {batch.sha256}); "
                "nothing new to train on"
            )
        else:
            frame, problem = parse_batch(batch, self.limits)
            if frame is not None:
                keys = distinct_row_keys(frame)
                new_keys = self.known_rows().new(keys)
                repeated = len(frame) - len(keys)
                counted = f"{len(keys)} rows" + (
                    f" ({repeated} more repeated within the file, counted once)" if repeated else ""
                )
                if not len(new_keys):
                    problem = (
                        f"{shown}: all {counted} are already in the data (the base dataset "
                        "or accepted batches); nothing new to train on"
                    )
        try:
            where = self.landing.move(batch, QUARANTINE if problem else ACCEPTED, reason=problem)
        except BatchChangedError:
            log.warning(f"{shown}: changed while being read; left for the next tick")
            return
        if problem:
            log.warning(
                f"quarantined {shown} as {QUARANTINE}/{display_name(where)}: {one_line(problem)}"
            )
        else:
            self.index.add(where, keys)
            self.known.add(new_keys)
            rows_sha = hashlib.sha256(new_keys.astype(np.uint64).tobytes()).hexdigest()
            self.accepted.append((where, rows_sha))
            log.info(
                f"accepted {shown} as {ACCEPTED}/{display_name(where)}: {len(new_keys)} new "
                f"of {counted}"
            )
        if batch.sha256 not in self.seen:
            self.cursor.processed.append(batch.sha256)
            self.seen.add(batch.sha256)


def evaluate_new_batches(
    context: SensorEvaluationContext, housing_source: HousingSource, io_manager: DatasetIOManager
):
    if not housing_source.landing_url:
        return SkipReason("no landing zone configured (HOUSING_LANDING_URL)")
    landing = housing_source.landing()
    cursor = SensorCursor.load(context.cursor, landing)
    tick = _Tick(context, housing_source, landing, cursor, landing.accepted_names(), batch_limits())
    tick.recover_interrupted()
    for name in landing.incoming():
        try:
            tick.process(name)
        except Exception as exc:  # this file only: the others and the run request go on
            context.log.error(
                f"{display_name(name)}: could not be handled ({type(exc).__name__}: "
                f"{one_line(str(exc))}); left in place, tried again at the next tick"
            )
    try:
        tick.index.save()
    except Exception as exc:  # the next tick indexes these batches from accepted/ again
        context.log.warning(
            f"the row-key index could not be stored ({type(exc).__name__}: "
            f"{one_line(str(exc))}); the next tick rebuilds it"
        )
    accepted = tick.accepted
    cursor.requested |= {name for name, _ in accepted}
    context.update_cursor(cursor.dump())
    if not accepted:
        return SkipReason("no new valid batch")
    job_name, run_config = retrain_request(io_manager, context.log)
    return RunRequest(  # the key names the new rows: the same rows never start a second run
        run_key="batches-" + "-".join(sha[:12] for _, sha in accepted),
        job_name=job_name,
        run_config=run_config,
        tags={BATCHES_TAG: ",".join(name for name, _ in accepted)},
    )


def new_batch_sensor_every(interval_s: int) -> SensorDefinition:
    """The landing-zone sensor, ticking every ``interval_s`` seconds (``HOUSING_SENSOR_INTERVAL_S``
    in the code location). Dagster's daemon looks at sensors in a 5 s loop and skips a sensor
    whose last tick began even a moment less than its minimum interval ago: asking for exactly
    5 ticked every 10 s (measured), so the interval asked of Dagster is one second shorter."""
    return sensor(
        name="new_batch_sensor",
        jobs=[retrain_job, housing_pipeline_job],
        minimum_interval_seconds=max(1, interval_s - 1),
        default_status=DefaultSensorStatus.RUNNING,
        description="Validates each new batch in the landing zone; accepted batches trigger one "
        "retraining run (refit with the stored choices; the whole pipeline if nothing is tuned "
        "yet), bad ones are quarantined.",
    )(evaluate_new_batches)


new_batch_sensor = new_batch_sensor_every(DEFAULT_INTERVAL_S)


def retune_reasons(instance, run_id: str) -> list[str]:
    """Why a finished retraining run calls for the whole search again (empty: it does not):
    the new batch drifted, the champion's live error on it was too high, or the refit failed
    the gate. Reads the promotion gate's own verdict on the gate rows (``gate_passed``: a forced
    promotion still failed the gate) and what blocked it; a materialization recorded before
    the gate split carried only ``promoted``."""
    reasons = []
    registered = instance.get_latest_materialization_event(AssetKey("registered_model"))
    if registered is not None and registered.run_id == run_id:
        metadata = registered.asset_materialization.metadata
        passed = metadata.get("gate_passed", metadata.get("promoted"))
        if not getattr(passed, "value", True):
            reason = getattr(metadata.get("promotion_reason"), "value", "")
            blocked = getattr(metadata.get("gate_blocked_by"), "value", "")
            what = f"blocked by {blocked}: " if blocked and blocked != "nothing" else ""
            reasons.append(
                f"the refitted challenger failed the promotion gate on the gate rows "
                f"({what}{reason})"
            )
    for record in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = record.dagster_event.event_specific_data
        if evaluation.passed:
            continue
        if evaluation.check_name == "batch_drift":
            reasons.append("the new batch drifted from the training data (batch_drift)")
        elif evaluation.check_name == "champion_live_error":
            reasons.append(
                "the champion's error on the new batch exceeded its test error "
                f"(champion_live_error: {evaluation.description or 'see the check'})"
            )
    return reasons


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    monitored_jobs=[retrain_job],
    request_job=housing_pipeline_job,
    default_status=DefaultSensorStatus.RUNNING,
    description="After a retrain whose challenger failed the gate, whose batch drifted or on "
    "whose batch the champion erred beyond its test error: one "
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
