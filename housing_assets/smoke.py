"""The quick ("smoke") configuration: every step runs for real, on small grids and few trials."""

SMOKE_OPS_CONFIG = {
    "imputed_housing": {"config": {"strategies": ["median", "knn", "iterative"]}},
    "geo_features": {"config": {"k_grid": [5, 20], "cv_folds": 2}},
    "model_comparison": {"config": {"cv_folds": 2, "max_candidates_per_family": 1}},
    "tuned_params": {"config": {"n_trials": 4, "cv_folds": 2}},
}
SMOKE_RUN_CONFIG = {"ops": SMOKE_OPS_CONFIG}


def smoke_config_for(selection: list[str]) -> dict:
    """The smoke run config restricted to the selected assets."""
    return {"ops": {k: v for k, v in SMOKE_OPS_CONFIG.items() if k in selection}}
