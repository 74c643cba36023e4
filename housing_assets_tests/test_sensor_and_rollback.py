import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance, RunRequest, SkipReason, build_sensor_context

from housing_assets.defs.sensors import new_batch_sensor
from housing_assets.resources.io_managers import LocalDatasetIOManager
from housing_assets.resources.source import HousingSource
from housing_assets_testkit import REPO_ROOT


def _evaluate(landing, cursor=None, source="unused", settle_s=0.0, assets=None, instance=None):
    """One tick of the real sensor. With the default ``source`` the base dataset cannot be
    read, so its rows are not recognised (the sensor's fallback); files count as finished at
    once unless ``settle_s`` says otherwise. ``assets``: the IO manager's folder (default:
    beside a local landing zone; nothing tuned there means the whole pipeline is requested)."""
    if assets is None:
        local = not str(landing).startswith("gs://")
        assets = Path(landing).parent / "assets" if local else Path(tempfile.mkdtemp())
    with build_sensor_context(  # a context manager: HousingSource may nest the gcs resource
        instance=instance or DagsterInstance.ephemeral(),
        cursor=cursor,
        resources={
            "housing_source": HousingSource(
                url=str(source), landing_url=str(landing), landing_settle_s=settle_s
            ),
            "io_manager": LocalDatasetIOManager(base_dir=str(assets)),
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


def test_a_storage_failure_on_one_batch_does_not_hold_back_the_others(
    tmp_path, raw_frame, monkeypatch
):
    """Copying one batch fails (a patched write, the only stand-in here; everything else is the
    real sensor on a real folder): that batch stays in place, the other is accepted and its run
    requested at once; the failed one follows at the next tick."""
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
    result, cursor = _evaluate(landing, cursor)
    assert isinstance(result, RunRequest) and result.tags["housing/batches"] == "a.csv"
    assert [p.name for p in (landing / "accepted").iterdir()] == ["a.csv"]
    assert (landing / "b.csv").exists()  # nothing lost

    monkeypatch.setattr(LocalLanding, "write", write)  # the storage is back
    result, cursor = _evaluate(landing, cursor)
    assert isinstance(result, RunRequest) and result.tags["housing/batches"] == "b.csv"
    assert isinstance(_evaluate(landing, cursor)[0], SkipReason)  # each batch in one run


def test_a_batch_accepted_by_an_interrupted_tick_still_gets_its_run(
    tmp_path, raw_frame, monkeypatch
):
    """The stored choices cannot be read after a batch was moved to accepted/ (a patched IO
    manager read, the only stand-in): the tick fails (its cursor is not saved, no run) and the
    next tick requests the run for it."""
    landing = tmp_path / "landing"
    landing.mkdir()
    idle, cursor = _evaluate(landing)
    assert isinstance(idle, SkipReason)
    raw_frame.iloc[:40].to_csv(landing / "a.csv", index=False)
    raw_frame.iloc[40:80].to_csv(landing / "b.csv", index=False)

    def unreachable(self, key_path):
        raise OSError("storage unreachable")

    load = LocalDatasetIOManager.load
    monkeypatch.setattr(LocalDatasetIOManager, "load", unreachable)
    with pytest.raises(OSError, match="storage unreachable"):
        _evaluate(landing, cursor)
    assert sorted(p.name for p in (landing / "accepted").iterdir()) == ["a.csv", "b.csv"]

    monkeypatch.setattr(LocalDatasetIOManager, "load", load)  # the storage is back
    result, cursor = _evaluate(landing, cursor)
    assert isinstance(result, RunRequest)
    assert result.tags["housing/batches"] == "a.csv,b.csv"
    again, _ = _evaluate(landing, cursor)
    assert isinstance(again, SkipReason)  # each batch in exactly one run

    # A new sensor (no cursor) finds batches already in accepted/: they are part of the data and
    # do not trigger a run of their own.
    assert isinstance(_evaluate(landing, None)[0], SkipReason)


def test_raw_housing_source_reads_base_plus_accepted_batches(tmp_path, housing_tgz, raw_frame):
    accepted = tmp_path / "landing" / "accepted"
    accepted.mkdir(parents=True)
    new_rows = raw_frame.iloc[:30].assign(median_house_value=123_456.0)
    pd.concat([new_rows, raw_frame.iloc[30:35]]).to_csv(accepted / "b1.csv", index=False)
    from housing_assets.steps import assemble_raw

    source = HousingSource(url=str(housing_tgz), landing_url=str(tmp_path / "landing"))
    loaded = assemble_raw(*source.fetch())
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


def _store(assets, key: str, value) -> None:
    """``value`` stored as asset ``key`` by the real IO manager, as a run would store it."""
    from dagster import AssetKey, build_output_context

    LocalDatasetIOManager(base_dir=str(assets)).handle_output(
        build_output_context(asset_key=AssetKey(key)), value
    )


def _tuned(spec) -> object:
    from housing_assets.datasets import TunedParams

    return TunedParams(
        family="boosting",
        params={"learning_rate": 0.05},
        metric="wmape",
        cv_metrics={"wmape": 12.0},
        trials=pd.DataFrame({"number": [0], "value": [12.0]}),
        spec=spec,
    )


def test_a_batch_retrains_with_the_stored_choices_and_retunes_nothing(tmp_path, monkeypatch):
    """Before anything is tuned a batch starts the whole pipeline; after, a retrain whose run
    config pins the stored imputation strategy (beside the median its check needs) and K, read
    from the stored tuned_params, not from any materialization's metadata labels."""
    from housing_assets.defs.sensors import retrain_request
    from housing_assets.ml.pipeline import FeatureSpec

    monkeypatch.setenv("HOUSING_RETRAIN_CONFIG", str(REPO_ROOT / "configs" / "smoke.yaml"))
    io_manager = LocalDatasetIOManager(base_dir=str(tmp_path / "assets"))
    job, config = retrain_request(io_manager)
    assert job == "housing_pipeline_job" and "tuned_params" in config["ops"]

    _store(tmp_path / "assets", "tuned_params", _tuned(None))  # stored by an older version
    assert retrain_request(io_manager)[0] == "housing_pipeline_job"

    _store(
        tmp_path / "assets", "tuned_params", _tuned(FeatureSpec("iterative", 20, random_state=42))
    )
    job, config = retrain_request(io_manager)
    assert job == "retrain_job"
    assert config["ops"]["imputed_housing"]["config"]["strategies"] == ["iterative", "median"]
    assert config["ops"]["geo_features"]["config"] == {"k_grid": [20], "cv_folds": 2}
    assert not {"model_comparison", "tuned_params"} & set(config["ops"])


def test_renamed_metadata_labels_change_nothing_a_retrain_does(tmp_path, raw_frame):
    """The sensor, evaluated for real on a batch, pins what tuned_params stores even when the
    materializations' metadata says otherwise or uses other labels."""
    from dagster import AssetMaterialization

    from housing_assets.ml.pipeline import FeatureSpec

    landing = tmp_path / "landing"
    landing.mkdir()
    _store(tmp_path / "assets", "tuned_params", _tuned(FeatureSpec("knn", 15, random_state=42)))
    raw_frame.iloc[:40].to_csv(landing / "a.csv", index=False)
    with DagsterInstance.ephemeral() as instance:
        for asset, metadata in [
            ("imputed_housing", {"chosen_strategy": "median", "strategy": "iterative"}),
            ("geo_features", {"chosen_k": 99, "k": 3}),
            ("tuned_params", {"family": "forest"}),
        ]:
            instance.report_runless_asset_event(AssetMaterialization(asset, metadata=metadata))
        result, _ = _evaluate(landing, assets=tmp_path / "assets", instance=instance)
    assert isinstance(result, RunRequest) and result.job_name == "retrain_job"
    ops = result.run_config["ops"]
    assert ops["imputed_housing"]["config"]["strategies"] == ["knn", "median"]
    assert ops["geo_features"]["config"]["k_grid"] == [15]


def test_retune_reasons_read_the_gate_verdict_not_the_promotion():
    """A retrain whose challenger failed the gate on its gate rows retunes, naming what
    blocked it, even when the promotion was forced; one that passed does not."""
    from dagster import AssetKey, AssetMaterialization

    from housing_assets.defs.sensors import retune_reasons

    with DagsterInstance.ephemeral() as instance:

        def registered(**metadata):
            instance.report_runless_asset_event(
                AssetMaterialization("registered_model", metadata=metadata)
            )
            event = instance.get_latest_materialization_event(AssetKey("registered_model"))
            return retune_reasons(instance, event.run_id)

        assert registered(promoted=True, gate_passed=True, gate_blocked_by="nothing") == []
        (reason,) = registered(
            promoted=True,  # forced
            gate_passed=False,
            gate_blocked_by="ocean_proximity=INLAND",
            promotion_reason="forced by configuration (...)",
        )
        assert "failed the promotion gate on the gate rows" in reason
        assert "blocked by ocean_proximity=INLAND" in reason
        # Recorded before the gate split: only `promoted`.
        assert len(registered(promoted=False, promotion_reason="old")) == 1
