from dagster import AssetSelection, define_asset_job

from housing_assets.defs.smoke import SMOKE_RUN_CONFIG

ALL_ASSETS = AssetSelection.all()

#: The run tag naming the landing batches a sensor-requested run brings (comma-separated).
BATCHES_TAG = "housing/batches"

housing_pipeline_job = define_asset_job(
    "housing_pipeline_job",
    selection=ALL_ASSETS,
    description="All seven assets with the default (full) configuration.",
)

housing_smoke_job = define_asset_job(
    "housing_smoke_job",
    selection=ALL_ASSETS,
    config=SMOKE_RUN_CONFIG,
    description="All seven assets with a quick configuration (few trials, small grids).",
)

# Retrain is not retune: a new batch refits the data steps and the final model with the stored
# choices (imputation strategy, K, family and hyper-parameters, pinned by the sensor's run
# config); model_comparison and tuned_params are not re-run. In the UI they show as stale
# against the new data until the next retune.
RETRAIN_ASSETS = (
    "raw_housing",
    "imputed_housing",
    "geo_features",
    "train_test_split",
    "registered_model",
)
retrain_job = define_asset_job(
    "retrain_job",
    selection=AssetSelection.assets(*RETRAIN_ASSETS),
    description="Started by new_batch_sensor: refits raw_housing (base + accepted batches), the "
    "features, the split and the registered model with the stored choices and tuned "
    "hyper-parameters; no comparison, no search.",
)

retune_smoke_job = define_asset_job(
    "retune_smoke_job",
    selection=AssetSelection.assets("tuned_params").downstream(),
    config={"ops": {k: v for k, v in SMOKE_RUN_CONFIG["ops"].items() if k == "tuned_params"}},
    description="tuned_params+ with the quick configuration: a fast retune and re-register "
    "from already materialized upstream assets.",
)
