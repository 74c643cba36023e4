"""The code location: ``defs`` is what `dagster dev` and `dagster asset materialize` load."""

import atexit
import gc

from dagster import Definitions

from housing_assets.defs.assets import PIPELINE_ASSETS
from housing_assets.defs.checks import PIPELINE_CHECKS
from housing_assets.defs.jobs import (
    housing_pipeline_job,
    housing_smoke_job,
    retrain_job,
    retune_smoke_job,
)
from housing_assets.defs.schedules import weekly_retune
from housing_assets.defs.sensors import new_batch_sensor, retune_sensor
from housing_assets.platform.run_liveness import worker_tagging_in_process_executor
from housing_assets.resources import build_resources

defs = Definitions(
    assets=PIPELINE_ASSETS,
    asset_checks=PIPELINE_CHECKS,
    jobs=[housing_pipeline_job, housing_smoke_job, retrain_job, retune_smoke_job],
    sensors=[new_batch_sensor, retune_sensor],
    schedules=[weekly_retune],
    resources=build_resources(),
    # The graph is a chain: a process per step would only add ~3-4 s of imports per step.
    # Parallelism lives inside the steps (n_jobs). The executor also records the run's worker
    # so a killed run is failed by run monitoring (housing_assets/platform/run_liveness.py).
    executor=worker_tagging_in_process_executor,
)

# A process that loaded this code location (a CLI run, a run worker) ends with the interpreter's
# last garbage collection walking every object of Dagster, MLflow, W&B, pandas and scikit-learn:
# 1.5 s here, after the run is over. Freezing them first (the last exit handler to run, after
# W&B's and MLflow's own) skips that walk; the memory is the operating system's to reclaim.
# Nothing is lost: runs, events and files are written and closed before exit, not by finalizers.
atexit.register(gc.freeze)
