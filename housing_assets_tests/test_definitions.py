import yaml
from dagster import AssetKey

from housing_assets_tests.conftest import CONTRACT_ASSETS, REPO_ROOT


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
