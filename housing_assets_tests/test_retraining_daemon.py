"""Sensor-driven retraining with a real dagster-daemon on a temporary DAGSTER_HOME."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from housing_assets_testkit import REPO_ROOT, execute_job_cli, wait_for

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def _batch(raw_frame, seed: int, n: int = 150):
    """New, plausible rows: real rows with a small jitter (so they are not duplicates)."""
    rng = np.random.default_rng(seed)
    rows = raw_frame.dropna().sample(n, random_state=seed).reset_index(drop=True)
    rows["housing_median_age"] = (rows["housing_median_age"] + rng.integers(0, 2, n)).clip(1, 52)
    rows["median_income"] = (rows["median_income"] * rng.uniform(0.98, 1.02, n)).round(4)
    return rows


def test_daemon_retrains_on_batches_and_quarantines_bad_ones(isolated_env, raw_frame, tmp_path):
    from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
    from mlflow import MlflowClient

    landing = tmp_path / "landing"
    landing.mkdir()
    env = {
        **os.environ,
        **isolated_env,
        "HOUSING_LANDING_URL": str(landing),
        "HOUSING_SENSOR_INTERVAL_S": "3",
        "HOUSING_RETRAIN_CONFIG": str(REPO_ROOT / "configs" / "smoke.yaml"),
    }

    # A champion to start from.
    first = execute_job_cli("housing_smoke_job", env, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    tracking = f"sqlite:///{Path(isolated_env['HOUSING_DATA_DIR']) / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(tracking, tracking)

    def versions() -> list[int]:
        return sorted(
            int(v.version) for v in client.search_model_versions("name='housing_price_model'")
        )

    def champion() -> str:
        return str(client.get_model_version_by_alias("housing_price_model", "champion").version)

    assert versions() == [1] and champion() == "1"

    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "daemon.log", "w"),  # noqa: SIM115 (lives as long as the daemon)
        start_new_session=True,
    )
    instance = DagsterInstance.get()
    try:

        def sensor_runs():
            return instance.get_runs(RunsFilter(job_name="retrain_job"))

        def retune_runs():
            runs = instance.get_runs(RunsFilter(job_name="housing_pipeline_job"))
            return [r for r in runs if "housing/retune_reason" in r.tags]

        def materializations(asset: str) -> int:
            return len(instance.fetch_materializations(AssetKey(asset), limit=100).records)

        tuned_before = materializations("tuned_params")

        def finished(n):
            runs = sensor_runs()
            done = [r for r in runs if r.is_finished]
            return runs if len(runs) >= n and len(done) == len(runs) else None

        # 1. A good batch: one run, a new model version.
        _batch(raw_frame, 1).to_csv(landing / "batch-001.csv", index=False)
        runs = wait_for(
            lambda: finished(1), 420, "the first retraining run", poll_s=2, process=daemon
        )
        assert [r.status for r in runs] == [DagsterRunStatus.SUCCESS], _log(tmp_path)
        assert runs[0].tags["housing/batches"] == "batch-001.csv"
        # Retrain, not retune: the stored choices pinned, no comparison and no search re-run.
        pinned = runs[0].run_config["ops"]
        assert pinned["geo_features"]["config"]["k_grid"] == [
            instance.get_latest_materialization_event(AssetKey("geo_features"))
            .asset_materialization.metadata["chosen_k"]
            .value
        ]
        assert "tuned_params" not in pinned and "model_comparison" not in pinned
        assert materializations("tuned_params") == tuned_before
        assert versions()[:2] == [1, 2]
        assert (landing / "accepted" / "batch-001.csv").is_file()
        decision = client.get_model_version("housing_price_model", "2").tags["promotion_decision"]
        assert decision.startswith(("promoted", "kept champion"))
        champion_before = champion()

        # 2. A malformed batch: quarantined with its reason, no run, champion untouched.
        bad = _batch(raw_frame, 2)
        bad["median_income"] = bad["median_income"].astype(str)
        bad.loc[3, "median_income"] = "about 4k"
        bad.to_csv(landing / "batch-002.csv", index=False)
        wait_for(
            lambda: (landing / "quarantine" / "batch-002.csv.reason.txt").is_file(),
            60,
            "the quarantine",
            poll_s=2,
            process=daemon,
        )
        reason = (landing / "quarantine" / "batch-002.csv.reason.txt").read_text()
        assert "batch-002.csv: column 'median_income' must be numeric" in reason
        time.sleep(8)  # a few more sensor ticks
        assert len(sensor_runs()) == 1
        assert champion() == champion_before or retune_runs()  # only a retune may move it

        # 3. Three batches at once: each processed exactly once.
        for i in (3, 4, 5):
            _batch(raw_frame, i).to_csv(landing / f"batch-00{i}.csv", index=False)
        wait_for(
            lambda: len(list((landing / "accepted").iterdir())) == 4,
            60,
            "the three batches to be accepted",
            poll_s=2,
            process=daemon,
        )
        runs = wait_for(
            lambda: finished(2), 420, "the second retraining run", poll_s=2, process=daemon
        )
        assert all(r.status == DagsterRunStatus.SUCCESS for r in runs), _log(tmp_path)
        time.sleep(8)
        runs = sensor_runs()
        tagged = [name for r in runs for name in r.tags["housing/batches"].split(",")]
        assert sorted(tagged) == [
            "batch-001.csv",
            "batch-003.csv",
            "batch-004.csv",
            "batch-005.csv",
        ]

        # A retune follows exactly the retrains whose challenger failed the gate or whose
        # batch drifted: one run of the whole pipeline each, keyed by the retrain.
        def needs_retune(run) -> bool:
            (version,) = client.search_model_versions(f"tags.dagster_run_id = '{run.run_id}'")
            kept = version.tags["promotion_decision"].startswith("kept champion")
            drifted = any(
                e.dagster_event.event_specific_data.check_name == "batch_drift"
                and not e.dagster_event.event_specific_data.passed
                for e in instance.all_logs(
                    run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
                )
            )
            return kept or drifted

        expected = sorted(f"retune-after-{r.run_id}" for r in runs if needs_retune(r))
        time.sleep(8)  # a few sensor ticks

        def settled_retunes():
            found = retune_runs()
            done = len(found) >= len(expected) and all(r.is_finished for r in found)
            return (found,) if done else None

        (retunes,) = wait_for(settled_retunes, 600, "the retuning runs", poll_s=2, process=daemon)
        assert sorted(r.tags["dagster/run_key"] for r in retunes) == expected
        assert len(versions()) == 1 + len(runs) + len(retunes)
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)


def _log(tmp_path) -> str:
    return (tmp_path / "daemon.log").read_text()[-3000:]
