"""The pipeline's seven steps as plain, typed functions, one module each, in the data's order.

Each step takes its inputs and a frozen settings dataclass (the only place its defaults live)
and returns the value its asset stores. The steps know nothing of Dagster, MLflow or W&B: the
assets convert their config to settings, call the step, hand its evidence (housing_assets.reports)
to the tracking resource and return; ``benchmarks/bare_pipeline.py`` calls the same seven functions in order.

    raw = assemble_raw(base, batches)                      # raw_housing
    imputed = impute(raw.frame, ImputationSettings())      # imputed_housing
    geo = add_geo_clusters(imputed, GeoSettings())         # geo_features
    split = split_hold_out(raw.frame, geo)                 # train_test_split
    comparison = compare_models(split, ComparisonSettings())  # model_comparison
    tuned = tune_params(split, comparison, TuningSettings())  # tuned_params
    fitted = fit_final_model(split, tuned, seeds=3)         # registered_model (then published)
"""

from housing_assets.steps.comparison import ComparisonSettings, compare_models
from housing_assets.steps.final_model import FittedModel, RegistrationSettings, fit_final_model
from housing_assets.steps.geo import GeoSettings, add_geo_clusters
from housing_assets.steps.imputation import ImputationSettings, impute
from housing_assets.steps.raw import RawHousing, assemble_raw
from housing_assets.steps.split import split_hold_out
from housing_assets.steps.tuning import TuningSettings, tune_params

__all__ = [
    "ComparisonSettings",
    "FittedModel",
    "GeoSettings",
    "ImputationSettings",
    "RawHousing",
    "RegistrationSettings",
    "TuningSettings",
    "add_geo_clusters",
    "assemble_raw",
    "compare_models",
    "fit_final_model",
    "impute",
    "split_hold_out",
    "tune_params",
]
