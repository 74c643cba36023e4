import yaml
from dagster import AssetKey

from housing_assets_tests.support import CONTRACT_ASSETS, REPO_ROOT


def test_code_location_has_the_contract_assets_in_a_chain():
    from housing_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == set(CONTRACT_ASSETS)
    for upstream, downstream in zip(CONTRACT_ASSETS, CONTRACT_ASSETS[1:], strict=False):
        parents = {k.to_user_string() for k in graph.get(AssetKey(downstream)).parent_keys}
        assert upstream in parents, (upstream, downstream)
    checks = {k.name for k in graph.asset_check_keys}
    assert {
        "imputation_rmse",
        "split_matches_contract",
        "champion_serves_raw_rows",
        "batch_drift",
    } <= checks
    jobs = {j.name for j in defs.resolve_all_job_defs()}
    assert {"housing_pipeline_job", "housing_smoke_job", "retrain_job", "retune_smoke_job"} <= jobs
    assert defs.resolve_sensor_def("new_batch_sensor") is not None


def test_smoke_yaml_matches_the_smoke_job():
    from housing_assets.smoke import SMOKE_RUN_CONFIG

    assert yaml.safe_load((REPO_ROOT / "configs" / "smoke.yaml").read_text()) == SMOKE_RUN_CONFIG


def test_asset_config_defaults_are_the_library_defaults():
    """The assets' default settings and the plain library functions' defaults are one set, so
    the bare benchmark (library calls, no Dagster) measures the same work as the default run."""
    import inspect

    from housing_assets.assets.modeling import ComparisonConfig, TuningConfig
    from housing_assets.assets.preparation import GeoConfig, ImputationConfig
    from housing_assets.ml.cv import FoldCache
    from housing_assets.ml.geo import select_n_clusters
    from housing_assets.ml.imputation import masked_reconstruction
    from housing_assets.ml.models import compare_families
    from housing_assets.ml.tuning import tune

    def defaults(function) -> dict:
        return {
            name: p.default
            for name, p in inspect.signature(function).parameters.items()
            if p.default is not inspect.Parameter.empty
        }

    imputation, geo = defaults(masked_reconstruction), defaults(select_n_clusters)
    assert list(imputation["strategies"]) == ImputationConfig().strategies
    assert imputation["mask_fraction"] == ImputationConfig().mask_fraction
    assert imputation["max_masked"] == ImputationConfig().max_masked_cells
    assert imputation["rmse_tolerance"] == ImputationConfig().rmse_tolerance
    assert imputation["random_state"] == ImputationConfig().seed
    assert list(geo["k_grid"]) == GeoConfig().k_grid
    assert geo["n_folds"] == GeoConfig().cv_folds
    assert geo["metric"] == GeoConfig().metric
    comparison = defaults(compare_families)
    assert comparison["selection_metric"] == ComparisonConfig().selection_metric
    assert comparison["max_candidates"] == ComparisonConfig().max_candidates_per_family
    folds = FoldCache.__dataclass_fields__
    assert folds["n_folds"].default == ComparisonConfig().cv_folds == TuningConfig().cv_folds
    assert folds["random_state"].default == ComparisonConfig().seed == TuningConfig().seed
    tuning = defaults(tune)
    assert tuning["n_trials"] == TuningConfig().n_trials
    assert tuning["metric"] == TuningConfig().metric
    assert tuning["seed"] == TuningConfig().seed
