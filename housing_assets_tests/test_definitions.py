from dagster import AssetKey

from housing_assets_testkit import CONTRACT_ASSETS, REPO_ROOT


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
    sensor = defs.resolve_sensor_def("new_batch_sensor")
    assert {job.name for job in sensor.jobs} == {"retrain_job", "housing_pipeline_job"}
    assert sensor.minimum_interval_seconds == 29  # a tick every 30 s in the daemon's 5 s loop
    assert defs.resolve_sensor_def("retune_sensor").job.name == "housing_pipeline_job"
    schedule = defs.resolve_schedule_def("weekly_retune")
    assert schedule.job.name == "housing_pipeline_job" and schedule.cron_schedule == "0 3 * * 0"


def test_the_smoke_configuration_is_one_file():
    from housing_assets.defs.smoke import SMOKE_RUN_CONFIG

    link = REPO_ROOT / "configs" / "smoke.yaml"
    assert (
        link.is_symlink() and link.resolve() == REPO_ROOT / "housing_assets" / "defs" / "smoke.yaml"
    )
    assert SMOKE_RUN_CONFIG["ops"]["tuned_params"]["config"]["n_trials"] == 4


def test_asset_configs_are_the_step_settings():
    """Each asset's Dagster config has exactly its step's settings fields and defaults (but
    the tuning storage, which the deployment fixes), and converts back to the settings type: a
    new setting is added in one place."""
    import dataclasses

    from housing_assets.defs.assets.modeling import ComparisonConfig, TuningConfig
    from housing_assets.defs.assets.preparation import GeoConfig, ImputationConfig
    from housing_assets.defs.assets.registry import RegistrationConfig
    from housing_assets.steps import (
        ComparisonSettings,
        GeoSettings,
        ImputationSettings,
        RegistrationSettings,
        TuningSettings,
    )

    pairs = [
        (ImputationConfig, ImputationSettings),
        (GeoConfig, GeoSettings),
        (ComparisonConfig, ComparisonSettings),
        (TuningConfig, TuningSettings),
        (RegistrationConfig, RegistrationSettings),
    ]
    for config_type, settings_type in pairs:
        fields = [f.name for f in dataclasses.fields(settings_type) if f.name != "storage"]
        assert list(config_type.model_fields) == fields
        assert config_type().to_settings() == settings_type()
    changed = GeoConfig(k_grid=[3, 7], cv_folds=2).to_settings()
    assert changed == GeoSettings(k_grid=(3, 7), cv_folds=2)
