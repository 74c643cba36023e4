"""Alerts: one notification to the webhook (``HOUSING_ALERT_WEBHOOK_URL_FILE``,
housing_assets/io/alerts.py) per failed run, and per successful run that left something to
look at: a rejected challenger, a check that did not pass (drift, the champion's live error).

Sensors, not hooks inside the runs: a webhook that is down can never fail a run, and a run
killed from outside (its container gone) is still reported, by the daemon's run monitor.
"""

from __future__ import annotations

from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunStatusSensorContext,
    SkipReason,
    run_failure_sensor,
    run_status_sensor,
)

from housing_assets.defs.sensors import one_line
from housing_assets.io.alerts import Alert, run_link, send_alert
from housing_assets.settings import load as load_settings


def _metadata_value(metadata, key: str, default=None):
    entry = metadata.get(key)
    return default if entry is None else getattr(entry, "value", entry)


def run_warnings(instance, run_id: str) -> list[str]:
    """What a finished run leaves for someone to look at, one line each: a challenger that was
    not promoted (with the gate's reason) and every check that did not pass (drift, the
    champion's live error, ...), with its verdict."""
    lines = []
    registered = instance.get_latest_materialization_event(AssetKey("registered_model"))
    if registered is not None and registered.run_id == run_id:
        metadata = registered.asset_materialization.metadata
        if not _metadata_value(metadata, "promoted", True):
            version = _metadata_value(metadata, "version", "?")
            reason = _metadata_value(metadata, "promotion_reason", "")
            lines.append(f"challenger v{version} rejected, the champion stays: {reason}")
    for record in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = record.dagster_event.event_specific_data
        if evaluation.passed:
            continue
        asset = evaluation.asset_key.to_user_string()
        verdict = evaluation.description or ", ".join(
            f"{key}={_metadata_value(evaluation.metadata, key)}"
            for key in list(evaluation.metadata)[:4]
        )
        lines.append(f"check {evaluation.check_name} on {asset} did not pass: {verdict}")
    return lines


def _notify(context, title: str, details: list[str]) -> SkipReason | None:
    """Post one alert about ``context``'s run to the configured webhook and log the outcome
    (never the URL); a skip when no webhook is configured."""
    settings = load_settings()
    if settings.alert_webhook_url is None:
        return SkipReason("no alert webhook configured")
    run_id = context.dagster_run.run_id
    alert = Alert(title, [one_line(d) for d in details], run_link(settings.ui_url, run_id))
    problem = send_alert(settings.alert_webhook_url, alert)
    if problem:
        context.log.warning(f"alert not delivered: {problem}")
    else:
        context.log.info(f"alert sent: {title}")
    return None


@run_failure_sensor(
    name="alert_on_run_failure",
    default_status=DefaultSensorStatus.RUNNING,
    description="Sends one notification to the alert webhook (HOUSING_ALERT_WEBHOOK_URL_FILE) "
    "for each failed run, with the error and a link to the run.",
)
def alert_on_run_failure(context: RunFailureSensorContext):
    message = context.failure_event.message or "the run failed"
    return _notify(context, f"Run of {context.dagster_run.job_name} failed", [message])


@run_status_sensor(
    name="alert_on_run_warnings",
    run_status=DagsterRunStatus.SUCCESS,
    default_status=DefaultSensorStatus.RUNNING,
    description="Sends one notification to the alert webhook for each successful run that "
    "rejected its challenger or has a check that did not pass (drift, live error, ...).",
)
def alert_on_run_warnings(context: RunStatusSensorContext):
    run = context.dagster_run
    lines = run_warnings(context.instance, run.run_id)
    if not lines:
        return SkipReason(f"run {run.run_id[:8]} left nothing to report")
    return _notify(context, f"Run of {run.job_name} succeeded with {len(lines)} warning(s)", lines)
