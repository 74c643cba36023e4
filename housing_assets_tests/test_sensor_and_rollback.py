import json

import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance, RunRequest, SkipReason, build_sensor_context

from housing_assets.defs.sensors import new_batch_sensor
from housing_assets.resources.source import HousingSource
from housing_assets_testkit import REPO_ROOT


def _evaluate(landing, cursor=None, source="unused", settle_s=0.0):
    """One tick of the real sensor. With the default ``source`` the current data cannot be
    read, so only identical files are recognised (the sensor's fallback); files count as
    finished at once unless ``settle_s`` says otherwise."""
    with build_sensor_context(  # a context manager: HousingSource may nest the gcs resource
        instance=DagsterInstance.ephemeral(),
        cursor=cursor,
        resources={
            "housing_source": HousingSource(
                url=str(source), landing_url=str(landing), landing_settle_s=settle_s
            )
        },
    ) as context:
        return new_batch_sensor(context), context.cursor


def test_sensor_accepts_quarantines_and_never_repeats(tmp_path, raw_frame):
    landing = tmp_path / "landing"
    landing.mkdir()
    raw_frame.iloc[:40].to_csv(landing / "2026-01-a.csv", index=False)
    raw_frame.iloc[40:80].to_csv(landing / "2026-01-b.csv.gz", index=False, compression="gzip")
    raw_frame.iloc[80:90].drop(columns=["population"]).to_csv(landing / "bad.csv", index=False)
    (landing / "corrupt.tgz").write_bytes(b"not an archive")

    result, cursor = _evaluate(landing)
    assert isinstance(result, RunRequest)
    assert result.tags["housing/batches"] == "2026-01-a.csv,2026-01-b.csv.gz"
    assert result.run_key.startswith("batches-") and result.run_key.count("-") == 2
    assert sorted(p.name for p in (landing / "accepted").iterdir()) == [
        "2026-01-a.csv",
        "2026-01-b.csv.gz",
    ]
    reason = (landing / "quarantine" / "bad.csv.reason.txt").read_text()
    assert "bad.csv: missing columns ['population']" in reason
    assert "corrupt archive" in (landing / "quarantine" / "corrupt.tgz.reason.txt").read_text()
    assert [p.name for p in landing.iterdir() if p.is_file()] == []
    assert len(json.loads(cursor)["processed"]) == 4
    assert json.loads(cursor)["requested"] == ["2026-01-a.csv", "2026-01-b.csv.gz"]

    # Nothing new: skip. The same content dropped again: quarantined as a duplicate, no run.
    again, cursor2 = _evaluate(landing, cursor)
    assert isinstance(again, SkipReason)
    raw_frame.iloc[:40].to_csv(landing / "copy-of-a.csv", index=False)
    dup, _ = _evaluate(landing, cursor2)
    assert isinstance(dup, SkipReason)
    assert (
        "identical to a batch already processed"
        in (landing / "quarantine" / "copy-of-a.csv.reason.txt").read_text()
    )


def test_a_batch_accepted_by_an_interrupted_tick_still_gets_its_run(
    tmp_path, raw_frame, monkeypatch
):
    """A storage failure after one batch was moved to accepted/ fails the tick (its cursor is
    not saved, no run): the next tick requests the run for it. The failure is simulated (a
    patched write), the only stand-in here; everything else is the real sensor on a real folder."""
    from housing_assets.io.landing import LocalLanding

    landing = tmp_path / "landing"
    landing.mkdir()
    idle, cursor = _evaluate(landing)  # an earlier tick, with nothing to do
    assert isinstance(idle, SkipReason)
    raw_frame.iloc[:40].to_csv(landing / "a.csv", index=False)
    raw_frame.iloc[40:80].to_csv(landing / "b.csv", index=False)
    write = LocalLanding.write

    def failing_write(self, name, data, folder):
        if name == "b.csv":
            raise OSError("disk full")
        write(self, name, data, folder)

    monkeypatch.setattr(LocalLanding, "write", failing_write)
    with pytest.raises(OSError, match="disk full"):
        _evaluate(landing, cursor)
    assert [p.name for p in (landing / "accepted").iterdir()] == ["a.csv"]
    assert (landing / "b.csv").exists()  # nothing lost

    monkeypatch.setattr(LocalLanding, "write", write)  # the storage is back
    result, cursor = _evaluate(landing, cursor)
    assert isinstance(result, RunRequest)
    assert result.tags["housing/batches"] == "a.csv,b.csv"
    again, _ = _evaluate(landing, cursor)
    assert isinstance(again, SkipReason)  # each batch in exactly one run

    # A cursor from before this change (a plain list of sha256s) is read, and batches already
    # in accepted/ do not trigger a run of their own.
    legacy = json.dumps(json.loads(cursor)["processed"])
    assert isinstance(_evaluate(landing, legacy)[0], SkipReason)


def test_raw_housing_source_reads_base_plus_accepted_batches(tmp_path, housing_tgz, raw_frame):
    accepted = tmp_path / "landing" / "accepted"
    accepted.mkdir(parents=True)
    new_rows = raw_frame.iloc[:30].assign(median_house_value=123_456.0)
    pd.concat([new_rows, raw_frame.iloc[30:35]]).to_csv(accepted / "b1.csv", index=False)
    loaded = HousingSource(url=str(housing_tgz), landing_url=str(tmp_path / "landing")).load()
    assert len(loaded.frame) == 20_640 + 30
    lineage = loaded.lineage.set_index("batch")
    assert lineage.loc["b1.csv", "duplicates_removed"] == 5
    assert len(lineage.loc["b1.csv", "sha256"]) == 64


def _serving(X):
    import mlflow

    return float(
        np.asarray(mlflow.pyfunc.load_model("models:/housing_price_model@champion").predict(X))[0]
    )


def test_rollback_to_previous_then_to_a_named_version(registry, capsys):
    from housing_assets.cli.rollback import main

    client, X = registry
    assert _serving(X) == 300.0
    assert main(["--reason", "bad predictions in the north", "--who", "alice"]) == 0
    assert "champion v3 -> v2" in capsys.readouterr().out
    assert _serving(X) == 200.0  # serving follows the alias at once
    v2 = client.get_model_version("housing_price_model", "2")
    assert v2.tags["rolled_back_by"] == "alice"
    assert v2.tags["rollback_reason"] == "bad predictions in the north"
    assert v2.tags["rolled_back_from"] == "3" and v2.tags["rolled_back_at"]
    assert client.get_model_version("housing_price_model", "3").tags["demoted_by"] == "alice"

    assert main(["--to", "1", "--reason", "audit"]) == 0
    assert _serving(X) == 100.0
    assert main(["--to", "9", "--reason", "x"]) == 2
    assert "has no version 9" in capsys.readouterr().err
    assert main(["--reason", "no history"]) == 2  # v1 records no previous champion


def test_a_batch_retrains_with_the_stored_choices_and_retunes_nothing(monkeypatch):
    """Before anything is tuned a batch starts the whole pipeline; after, a retrain whose run
    config pins the stored imputation strategy (beside the median its check needs) and K."""
    from dagster import AssetMaterialization, DagsterInstance

    from housing_assets.defs.sensors import retrain_request

    monkeypatch.setenv("HOUSING_RETRAIN_CONFIG", str(REPO_ROOT / "configs" / "smoke.yaml"))
    with DagsterInstance.ephemeral() as instance:
        job, config = retrain_request(instance)
        assert job == "housing_pipeline_job" and "tuned_params" in config["ops"]

        for asset, metadata in [
            ("imputed_housing", {"chosen_strategy": "iterative"}),
            ("geo_features", {"chosen_k": 20}),
            ("tuned_params", {"family": "boosting"}),
        ]:
            instance.report_runless_asset_event(AssetMaterialization(asset, metadata=metadata))
        job, config = retrain_request(instance)
    assert job == "retrain_job"
    assert config["ops"]["imputed_housing"]["config"]["strategies"] == ["iterative", "median"]
    assert config["ops"]["geo_features"]["config"] == {"k_grid": [20], "cv_folds": 2}
    assert not {"model_comparison", "tuned_params"} & set(config["ops"])
