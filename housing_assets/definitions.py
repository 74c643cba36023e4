"""The code location: ``defs`` is what `dagster dev` and `dagster asset materialize` load.

Public Dagster API only, and no process-wide side effect at import: whatever the deployment
adds around the runs (a warm code server, worker liveness checks) is opt-in platform code
under ``housing_assets/platform/``, named by the instance config or the server's command.
"""

from dagster import Definitions, in_process_executor

from housing_assets.defs.alerts import alert_on_run_failure, alert_on_run_warnings
from housing_assets.defs.assets import PIPELINE_ASSETS
from housing_assets.defs.checks import PIPELINE_CHECKS
from housing_assets.defs.jobs import (
    housing_pipeline_job,
    housing_smoke_job,
    retrain_job,
    retune_smoke_job,
)
from housing_assets.defs.schedules import weekly_retune
from housing_assets.defs.sensors import new_batch_sensor_every, retune_sensor
from housing_assets.resources import build_resources
from housing_assets.settings import load

# The environment is read here, once, when the code location loads: a bad setting fails the
# load with a message naming the variable.
settings = load()
defs = Definitions(
    assets=PIPELINE_ASSETS,
    asset_checks=PIPELINE_CHECKS,
    jobs=[housing_pipeline_job, housing_smoke_job, retrain_job, retune_smoke_job],
    sensors=[
        new_batch_sensor_every(settings.sensor_interval_s),
        retune_sensor,
        alert_on_run_failure,
        alert_on_run_warnings,
    ],
    schedules=[weekly_retune],
    resources=build_resources(settings),
    # The graph is a chain: a process per step would only add ~3-4 s of imports per step.
    # Parallelism lives inside the steps (n_jobs).
    executor=in_process_executor,
)
