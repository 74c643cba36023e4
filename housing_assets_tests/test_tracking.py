"""MLflow through dagster-mlflow (a parent run per Dagster run) and W&B runs per trial, on a real
MLflow sqlite store and real W&B offline runs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, asset, materialize

from housing_assets.resources.tracking import MlflowTracking, WandbTracking, parent_run_name
from housing_assets_tests.support import wandb_offline_records


@asset
def logs_a_metric(mlflow: MlflowTracking) -> int:
    import mlflow as mlf

    with mlflow.start_run("logs_a_metric"):
        mlf.log_metric("answer", 42)
    return 1


@asset
def fails_after(logs_a_metric: int, mlflow: MlflowTracking) -> int:
    raise RuntimeError("this step fails")


@pytest.fixture
def tracking(tmp_path) -> MlflowTracking:
    return MlflowTracking(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        experiment_name="tracking-test",
        artifact_location=(tmp_path / "elsewhere").as_uri(),
    )


def _runs(tracking: MlflowTracking) -> list:
    client = tracking.client()
    experiment = client.get_experiment_by_name(tracking.experiment_name)
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


def test_each_dagster_run_gets_its_own_parent_run(tracking, tmp_path):
    instance = DagsterInstance.ephemeral()
    first = materialize([logs_a_metric], resources={"mlflow": tracking}, instance=instance)
    second = materialize([logs_a_metric], resources={"mlflow": tracking}, instance=instance)
    assert first.success and second.success

    runs = _runs(tracking)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert [p.data.tags["dagster_run_id"] for p in parents] == [first.run_id, second.run_id]
    assert all(p.info.status == "FINISHED" for p in parents)
    assert sorted(c.data.tags["mlflow.parentRunId"] for c in children) == sorted(
        p.info.run_id for p in parents
    )
    assert all(c.data.metrics["answer"] == 42 for c in children)
    experiment = tracking.client().get_experiment_by_name("tracking-test")
    assert experiment.artifact_location == (tmp_path / "elsewhere").as_uri()
    assert all(r.info.artifact_uri.startswith(experiment.artifact_location) for r in runs)


def test_a_failing_run_ends_its_parent_failed(tracking):
    result = materialize(
        [logs_a_metric, fails_after],
        resources={"mlflow": tracking},
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    (parent,) = [r for r in _runs(tracking) if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "FAILED"
    assert parent.data.tags["dagster_run_id"] == result.run_id


def test_parent_runs_are_named_after_the_job_or_the_selection():
    from dagster import AssetKey

    assert parent_run_name("housing_smoke_job", None) == "housing_smoke_job"
    selection = frozenset({AssetKey("tuned_params"), AssetKey("registered_model")})
    assert parent_run_name("__ASSET_JOB", selection) == "assets: registered_model, tuned_params"
    assert parent_run_name("__ephemeral_asset_job__", frozenset()) == "ad-hoc assets"


def test_one_wandb_run_per_trial_in_one_group(tmp_path):
    wandb = WandbTracking(mode="offline", dir=str(tmp_path))
    with wandb.trial_runs(group="housing-boosting-abc", config={"family": "boosting"}) as runs:
        for number, state in enumerate(["COMPLETE", "PRUNED", "COMPLETE"]):
            runs.log(
                f"housing-boosting-abc-trial-{number:03d}",
                {"num_leaves": 31 + number},
                {"state": state, "cv_wmape": 12.0 + number},
            )
    assert runs.written == 3 and runs.errors == []
    deadline = time.monotonic() + 30  # W&B's core process may still be flushing the last file
    while len(offline := offline_runs(tmp_path)) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(offline) == 3
    assert {r["group"] for r in offline} == {"housing-boosting-abc"}
    assert sorted(r["config"]["num_leaves"] for r in offline) == [31, 32, 33]


def offline_runs(root: Path) -> list[dict]:
    """The group and config of each W&B offline run under ``root`` (read from its run file)."""
    from wandb.proto import wandb_internal_pb2

    found = []
    for path in sorted(root.glob("wandb/offline-run-*/run-*.wandb")):
        for data in wandb_offline_records(path):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(data)
            if record.WhichOneof("record_type") == "run":
                config = {
                    item.key: json.loads(item.value_json) for item in record.run.config.update
                }
                found.append({"group": record.run.run_group, "config": config})
                break
    return found
