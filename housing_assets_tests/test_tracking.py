"""MLflow through dagster-mlflow (a parent run per Dagster run) and W&B runs per trial, on a real
MLflow sqlite store and real W&B offline runs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterInstance, asset, materialize

from housing_assets.reports.evidence import Evidence, MlflowRecord
from housing_assets.resources.tracking import (
    MlflowTracking,
    Tracking,
    WandbTracking,
    parent_run_name,
)
from housing_assets_testkit import wandb_offline_records


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
    if experiment is None:  # nothing was ever logged
        return []
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
    assert runs.errors == [] and runs.written == 3
    deadline = time.monotonic() + 30  # W&B's core process may still be flushing the last file
    while len(offline := offline_runs(tmp_path)) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(offline) == 3
    assert {r["group"] for r in offline} == {"housing-boosting-abc"}
    assert sorted(r["config"]["num_leaves"] for r in offline) == [31, 32, 33]
    # no package list per trial (0.1 s of CPU each); evidence runs keep theirs (test below)
    assert list(tmp_path.glob("wandb/offline-run-*/files/requirements.txt")) == []


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


@asset
def logs_nothing(mlflow: MlflowTracking) -> int:
    return 1


def test_a_run_that_logs_nothing_opens_no_parent_run(tracking):
    result = materialize(
        [logs_nothing], resources={"mlflow": tracking}, instance=DagsterInstance.ephemeral()
    )
    assert result.success
    assert _runs(tracking) == []


def test_an_unusable_store_fails_the_step_that_logs_and_names_it(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    tracking = MlflowTracking(tracking_uri=f"sqlite:///{blocker / 'mlflow' / 'mlflow.db'}")
    result = materialize(
        [logs_a_metric],
        resources={"mlflow": tracking},
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == "logs_a_metric"
    error = failure.event_specific_data.error.cause
    assert error.cls_name == "RuntimeError"
    assert f"folder {blocker / 'mlflow'} is not usable (Not a directory)" in error.message


@asset
def logs_evidence(wandb: WandbTracking) -> int:
    from housing_assets.reports import plots

    png = plots.to_png(plots.bar_chart(["a", "b"], [1.0, 2.0], "t", "x", highlight="a"))
    table = pd.DataFrame({"k": [3, 5], "rmse": [1.5, 1.25]})
    wandb.log_evidence(
        "evidence", "test", {"k": 5}, tables={"t": table}, images={"chart": png}, group="g"
    )
    table.loc[0, "k"] = 99  # the caller goes on with its frame: the run holds what was logged
    return 1


def test_evidence_is_written_in_the_background_and_complete_when_the_run_ends(tmp_path):
    wandb = WandbTracking(mode="offline", dir=str(tmp_path))
    result = materialize(
        [logs_evidence], resources={"wandb": wandb}, instance=DagsterInstance.ephemeral()
    )
    assert result.success
    (run_dir,) = tmp_path.glob("wandb/offline-run-*")  # written before materialize returned
    assert [r["group"] for r in offline_runs(tmp_path)] == ["g"]
    assert len(list(run_dir.glob("files/media/images/chart_*.png"))) == 1
    assert "dagster==" in (run_dir / "files" / "requirements.txt").read_text()
    (table_file,) = run_dir.glob("files/media/table/t_*.table.json")
    assert json.loads(table_file.read_text())["data"] == [["3", "1.5"], ["5", "1.25"]]


def test_a_failing_wandb_write_warns_and_the_step_succeeds(tmp_path):
    wandb = WandbTracking(mode="no-such-mode", dir=str(tmp_path))
    instance = DagsterInstance.ephemeral()
    result = materialize([logs_evidence], resources={"wandb": wandb}, instance=instance)
    assert result.success
    warnings = [
        e.user_message
        for e in instance.all_logs(result.run_id)
        if "A W&B run was not written" in e.user_message
    ]
    assert len(warnings) == 1 and "evidence" in warnings[0] and "no-such-mode" in warnings[0]


@asset
def publishes_evidence(context, tracking: Tracking) -> int:
    from housing_assets.reports import plots

    png = plots.to_png(plots.bar_chart(["a", "b"], [1.0, 2.0], "t", "x", highlight="a"))
    tracking.publish(
        context,
        Evidence(
            kind="probe",
            config={"k": 5},
            values={"chosen_k": 5},
            markdown={"why": "**K=5**: the smallest within one standard error"},
            json={"params": {"alpha": 0.5}},
            tables={"k_evidence": pd.DataFrame({"k": [3, 5], "rmse": [1.5, 1.25]})},
            figures={"k_plot": png},
            mlflow=MlflowRecord(
                "probe", params={"k": 5}, metrics={"rmse": 1.25}, texts={"note.txt": "hello"}
            ),
        ),
    )
    return 1


def test_one_publish_writes_the_evidence_to_dagster_mlflow_and_wandb(tmp_path, tracking):
    """Reports as data: the step's evidence reaches the asset's metadata (a table as Markdown,
    the figure inline), one MLflow run (params, metrics, text) and one W&B run (table, image)."""
    mlflow_tracking = tracking
    wandb = WandbTracking(mode="offline", dir=str(tmp_path))
    instance = DagsterInstance.ephemeral()
    result = materialize(
        [publishes_evidence],
        resources={"tracking": Tracking(mlflow=mlflow_tracking, wandb=wandb)},
        instance=instance,
    )
    assert result.success
    (materialization,) = result.asset_materializations_for_node("publishes_evidence")
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert metadata["chosen_k"] == 5 and metadata["params"] == {"alpha": 0.5}
    header, rule, *rows = metadata["k_evidence"].splitlines()
    assert header.split("|")[1:3] == ["    k ", "   rmse "] and rows[1].endswith("1.25 |")
    assert metadata["k_plot"].startswith("![k_plot](data:image/png;base64,")
    assert metadata["why"].startswith("**K=5**")

    client = mlflow_tracking.client()
    (run,) = [
        r
        for r in client.search_runs(client.search_experiments()[0].experiment_id.split())
        if r.info.run_name == "probe"
    ]
    assert run.data.params == {"k": "5"} and run.data.metrics == {"rmse": 1.25}
    assert run.data.tags["mlflow.parentRunId"]  # nested under the Dagster run's MLflow run
    (run_dir,) = tmp_path.glob("wandb/offline-run-*")
    assert len(list(run_dir.glob("files/media/images/k_plot_*.png"))) == 1
    assert list(run_dir.glob("files/media/table/k_evidence_*.table.json"))
