"""The code location: ``defs`` is what `dagster dev` and `dagster asset materialize` load.

Public Dagster API only, and no process-wide side effect at import: whatever the deployment
adds around the runs (a warm code server, worker liveness checks) is opt-in platform code
under ``housing_assets/platform/``, named by the instance config or the server's command.
"""

from dagster import Definitions, in_process_executor

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
from housing_assets.resources import build_resources

defs = Definitions(
    assets=PIPELINE_ASSETS,
    asset_checks=PIPELINE_CHECKS,
    jobs=[housing_pipeline_job, housing_smoke_job, retrain_job, retune_smoke_job],
    sensors=[new_batch_sensor, retune_sensor],
    schedules=[weekly_retune],
    resources=build_resources(),
    # The graph is a chain: a process per step would only add ~3-4 s of imports per step.
    # Parallelism lives inside the steps (n_jobs).
    executor=in_process_executor,
)
