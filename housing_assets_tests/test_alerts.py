"""Alerts through a real local HTTP receiver: the payload a Slack-compatible webhook gets for a
failed run and for a run that rejected its challenger, and that a webhook that is down or
refuses costs a logged warning, never an exception (and never shows the URL)."""

from __future__ import annotations

import http.server
import json
import threading

import pytest
from dagster import (
    DagsterInstance,
    MaterializeResult,
    asset,
    build_run_status_sensor_context,
    job,
    materialize,
    op,
)

from housing_assets.defs.alerts import alert_on_run_failure, alert_on_run_warnings
from housing_assets.io.alerts import Alert, send_alert
from housing_assets.settings import Settings, SettingsError
from housing_assets_testkit import free_port

TOKEN = "T000/B000/very-secret-token"


class Receiver:
    """A webhook on 127.0.0.1 that records each JSON body and answers ``status``."""

    def __init__(self, status: int = 200):
        self.bodies: list[dict] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                length = int(self.headers["Content-Length"])
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/{TOKEN}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(tmp_path, monkeypatch):
    served = Receiver()
    secret = tmp_path / "alert_webhook_url"
    secret.write_text(served.url + "\n")
    monkeypatch.setenv("HOUSING_ALERT_WEBHOOK_URL_FILE", str(secret))
    monkeypatch.setenv("HOUSING_UI_URL", "https://dagster.example.com/")
    yield served
    served.close()


def test_a_delivered_alert_is_slack_shaped_and_failures_never_name_the_url():
    served = Receiver()
    alert = Alert("Run of retrain_job failed", ["disk full"], "https://ui/runs/abc")
    assert send_alert(served.url, alert) is None
    (body,) = served.bodies
    assert body["text"].startswith("*Run of retrain_job failed*\n• disk full")
    assert "<https://ui/runs/abc|Open the run in Dagster>" in body["text"]
    assert body["blocks"][0]["text"] == {"type": "mrkdwn", "text": body["text"]}
    served.close()

    refusing = Receiver(status=500)
    assert send_alert(refusing.url, alert) == "the webhook answered HTTP 500"
    refusing.close()
    down = f"http://127.0.0.1:{free_port()}/services/{TOKEN}"
    problem = send_alert(down, alert, timeout_s=2)
    assert problem.startswith("the webhook could not be reached") and TOKEN not in problem


def test_the_webhook_setting_never_shows_the_url(tmp_path):
    assert "secret" not in repr(
        Settings.from_env({"HOUSING_ALERT_WEBHOOK_URL": "https://h/secret"})
    )
    empty = tmp_path / "none"
    empty.write_text("\n")
    assert (
        Settings.from_env({"HOUSING_ALERT_WEBHOOK_URL_FILE": str(empty)}).alert_webhook_url is None
    )
    with pytest.raises(SettingsError, match="not an http\\(s\\) URL") as error:
        Settings.from_env({"HOUSING_ALERT_WEBHOOK_URL": "ftp://h/secret"})
    assert "secret" not in str(error.value)


@op
def write_asset():
    raise OSError("No space left on device: /opt/dagster/data/assets/raw_housing")


@job
def failing_job():
    write_asset()


def test_a_failed_run_sends_one_alert_with_the_error_and_a_link(receiver, capfd):
    with DagsterInstance.ephemeral() as instance:
        result = failing_job.execute_in_process(instance=instance, raise_on_error=False)
        context = build_run_status_sensor_context(
            sensor_name="alert_on_run_failure",
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            dagster_event=result.get_run_failure_event(),
        ).for_run_failure()
        alert_on_run_failure(context)
    (body,) = receiver.bodies
    assert "*Run of failing_job failed*" in body["text"]
    assert "write_asset" in body["text"]
    assert f"https://dagster.example.com/runs/{result.run_id}" in body["text"]
    logged = "".join(capfd.readouterr())
    assert "alert sent: Run of failing_job failed" in logged and TOKEN not in logged


def _gate_run(instance, promoted: bool):
    @asset(name="registered_model")
    def registered():
        return MaterializeResult(
            metadata={
                "version": "7",
                "promoted": promoted,
                "promotion_reason": "slice ocean_proximity=INLAND worse by 1.4 points",
            }
        )

    result = materialize([registered], instance=instance)
    return build_run_status_sensor_context(
        sensor_name="alert_on_run_warnings",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_success_event(),
    )


def test_a_rejected_challenger_alerts_and_a_promotion_does_not(receiver):
    with DagsterInstance.ephemeral() as instance:
        assert alert_on_run_warnings(_gate_run(instance, promoted=True)) is not None  # a skip
        assert receiver.bodies == []
        alert_on_run_warnings(_gate_run(instance, promoted=False))
    (body,) = receiver.bodies
    assert "succeeded with 1 warning(s)" in body["text"]
    assert (
        "challenger v7 rejected, the champion stays: slice ocean_proximity=INLAND" in body["text"]
    )


def test_a_webhook_that_is_down_costs_a_warning_not_a_failure(monkeypatch, capfd):
    monkeypatch.setenv("HOUSING_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{free_port()}/{TOKEN}")
    with DagsterInstance.ephemeral() as instance:
        alert_on_run_warnings(_gate_run(instance, promoted=False))  # does not raise
    logged = "".join(capfd.readouterr())
    assert "alert not delivered: the webhook could not be reached" in logged
    assert TOKEN not in logged
