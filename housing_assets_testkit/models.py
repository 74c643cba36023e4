"""Tiny models in a real MLflow registry, for tests of what reads the registry."""

from __future__ import annotations

import pandas as pd


def register_constant_model(value: float, X: pd.DataFrame, **run_args) -> str:
    """A new version of ``housing_price_model`` that answers ``value`` for every row, logged
    in a run of its own (``run_args`` go to ``mlflow.start_run``); returns the run's id."""
    import mlflow
    from sklearn.dummy import DummyRegressor

    with mlflow.start_run(**run_args) as run:
        model = DummyRegressor(strategy="constant", constant=value).fit(X, [0] * len(X))
        mlflow.sklearn.log_model(
            model,
            name="m",
            registered_model_name="housing_price_model",
            pip_requirements=["scikit-learn"],
            serialization_format="cloudpickle",
        )
    return run.info.run_id
