"""When the whole search runs again without a person asking."""

from dagster import DefaultScheduleStatus, ScheduleDefinition

from housing_assets.defs.jobs import housing_pipeline_job

# Retune: the whole search again, weekly, on demand (this job, or `--select tuned_params+`),
# and after a retrain whose challenger failed the gate or whose batch drifted (retune_sensor).
weekly_retune = ScheduleDefinition(
    name="weekly_retune",
    job=housing_pipeline_job,
    cron_schedule="0 3 * * 0",  # Sundays, 03:00
    default_status=DefaultScheduleStatus.RUNNING,
    description="Re-chooses everything (imputation, K, family, hyper-parameters) on all data.",
)
