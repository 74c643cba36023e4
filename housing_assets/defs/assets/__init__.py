from housing_assets.defs.assets.ingestion import raw_housing
from housing_assets.defs.assets.modeling import model_comparison, tuned_params
from housing_assets.defs.assets.preparation import geo_features, imputed_housing, train_test_split
from housing_assets.defs.assets.registry import registered_model

PIPELINE_ASSETS = [
    raw_housing,
    imputed_housing,
    geo_features,
    train_test_split,
    model_comparison,
    tuned_params,
    registered_model,
]
