import pandas as pd
import yaml
from dagster import AssetExecutionContext, AssetKey, Config, MetadataValue, asset

from housing_assets import plots
from housing_assets.datasets import HousingSplit, RegisteredModel, TunedParams
from housing_assets.ml.metrics import METRIC_NAMES, regression_metrics
from housing_assets.ml.models import FAMILIES
from housing_assets.ml.pipeline import build_model_pipeline, feature_importances
from housing_assets.ml.registry import (
    CHALLENGER,
    CHAMPION,
    input_example,
    model_description,
    model_tags,
    package_code_path,
    pip_requirements,
    promotion_decision,
)
from housing_assets.ml.schema import FEATURE_COLUMNS, TARGET
from housing_assets.resources.tracking import MlflowTracking, WandbTracking, evidence_group


class RegistrationConfig(Config):
    wmape_tolerance_pp: float = 0.1
    rmse_tolerance: float = 0.01
    force_promote: bool = False


def _source_of(context: AssetExecutionContext) -> tuple[str, str]:
    """The source URL and sha256 recorded by the latest raw_housing materialization."""
    event = context.instance.get_latest_materialization_event(AssetKey("raw_housing"))
    if event is None or event.asset_materialization is None:
        return "unknown", "unknown"
    metadata = event.asset_materialization.metadata
    return (
        str(getattr(metadata.get("source_url"), "value", "unknown")),
        str(getattr(metadata.get("sha256"), "value", "unknown")),
    )


@asset(group_name="modeling", compute_kind="mlflow")
def registered_model(
    context: AssetExecutionContext,
    config: RegistrationConfig,
    train_test_split: HousingSplit,
    tuned_params: TunedParams,
    mlflow: MlflowTracking,
    wandb: WandbTracking,
) -> RegisteredModel:
    """One pipeline from the raw columns to the price, fitted on all training rows, scored once
    on the test rows, registered in MLflow and promoted to `champion` when it is at least as good
    as the current champion on the same test rows."""
    train, test = train_test_split.train, train_test_split.test
    family = FAMILIES[tuned_params.family]
    pipeline = build_model_pipeline(
        train_test_split.spec, family.build(tuned_params.params), scale=family.scale
    )
    pipeline.fit(train[FEATURE_COLUMNS], train[TARGET])
    predictions = pipeline.predict(test[FEATURE_COLUMNS])
    test_metrics = regression_metrics(test[TARGET], predictions)
    source_url, source_sha = _source_of(context)
    tags = model_tags(tuned_params.family, test_metrics, source_sha, context.run_id)
    description = model_description(
        tuned_params.family,
        tuned_params.params,
        tuned_params.cv_metrics,
        test_metrics,
        str(train_test_split.spec),
        source_url,
        source_sha,
        context.run_id,
    )
    model_config = yaml.safe_dump(
        {
            "family": tuned_params.family,
            "params": tuned_params.params,
            "feature_spec": vars(train_test_split.spec),
            "tuning_metric": tuned_params.metric,
            "features": FEATURE_COLUMNS,
            "target": TARGET,
            "target_transform": "log",
            "data": {"source_url": source_url, "sha256": source_sha},
        },
        sort_keys=False,
    )
    example = input_example(train[FEATURE_COLUMNS])
    importances = feature_importances(pipeline)

    import mlflow as mlf  # here, not at module level: loading the code location stays quick
    from mlflow.models import infer_signature

    client = mlflow.client()
    name = mlflow.registered_model_name
    with mlflow.start_run(f"registered_model-{tuned_params.family}", tags=tags) as run:
        mlf.log_params({f"param_{k}": v for k, v in tuned_params.params.items()})
        mlf.log_metrics({f"test_{k}": v for k, v in test_metrics.items()})
        mlf.log_metrics({f"cv_{k}": v for k, v in tuned_params.cv_metrics.items()})
        mlf.log_text(model_config, "model_config.yaml")
        mlf.log_text(importances.to_csv(index=False), "feature_importances.csv")
        info = mlf.sklearn.log_model(
            pipeline,
            name="model",
            signature=infer_signature(example, pipeline.predict(example)),
            input_example=example,
            pip_requirements=pip_requirements(),
            code_paths=[package_code_path()],
            serialization_format=mlf.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    client.update_model_version(name, version, description=description)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, CHALLENGER, version)

    previous = _champion_version(client, name)
    champion_metrics = _champion_metrics(client, name, test) if previous else None
    promote, reason = promotion_decision(
        test_metrics, champion_metrics, config.wmape_tolerance_pp, config.rmse_tolerance
    )
    if config.force_promote and not promote:
        promote, reason = True, f"forced by configuration ({reason})"
    client.set_model_version_tag(
        name,
        version,
        "promotion_decision",
        ("promoted: " if promote else "kept champion: ") + reason,
    )
    if promote:
        if previous:
            client.set_model_version_tag(name, version, "previous_champion", previous)
        client.set_registered_model_alias(name, CHAMPION, version)
    aliases = client.get_model_version(name, version).aliases

    scatter = plots.predicted_vs_actual(test[TARGET], predictions)
    top = importances.head(15)
    importance_plot = plots.bar_chart(
        top["feature"], top["importance_pct"], "Feature importance (top 15)", "share %"
    )
    wandb.log_evidence(
        f"model-v{version}-{context.run_id[:8]}",
        "registered_model",
        {"family": tuned_params.family, **tuned_params.params, "version": version},
        tables={"feature_importances": importances},
        figures={"predicted_vs_actual": scatter, "feature_importances": importance_plot},
        summary={**{f"test_{k}": v for k, v in test_metrics.items()}, "promoted": promote},
        group=evidence_group(context.run_id),
    )
    context.add_output_metadata(
        {
            "model_uri": f"models:/{name}/{version}",
            "version": version,
            "aliases": ", ".join(aliases),
            "promoted": promote,
            "promotion_reason": reason,
            "mlflow_run_id": run.info.run_id,
            **{f"test_{k}": float(v) for k, v in test_metrics.items()},
            "test_metrics": plots.markdown_table(
                pd.DataFrame(
                    {
                        "metric": METRIC_NAMES,
                        "cross_validation": [tuned_params.cv_metrics.get(m) for m in METRIC_NAMES],
                        "test": [test_metrics[m] for m in METRIC_NAMES],
                    }
                )
            ),
            "predicted_vs_actual": plots.figure_to_markdown(scatter, "predicted vs actual"),
            "feature_importances": plots.markdown_table(importances.head(20)),
            "feature_importance_plot": plots.figure_to_markdown(
                importance_plot, "feature importances"
            ),
            "description": MetadataValue.md(description),
        }
    )
    return RegisteredModel(
        name=name,
        version=version,
        model_uri=f"models:/{name}/{version}",
        run_id=run.info.run_id,
        family=tuned_params.family,
        params=tuned_params.params,
        test_metrics=test_metrics,
        cv_metrics=tuned_params.cv_metrics,
        aliases=list(aliases),
    )


def _champion_version(client, name: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def _champion_metrics(client, name: str, test) -> dict[str, float]:
    """The current champion's metrics on the same test rows as the challenger."""
    import mlflow as mlf

    champion = mlf.pyfunc.load_model(f"models:/{name}@{CHAMPION}")
    return regression_metrics(test[TARGET], champion.predict(test[FEATURE_COLUMNS]))
