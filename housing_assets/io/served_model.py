"""What the registry stores and serves: the fitted pipeline (raw columns -> price, every
transformer inside) and its conformal intervals, as one MLflow pyfunc model.

``predict(df)`` answers one price per row, as the contract says. With MLflow's inference
params, ``predict(df, params={"interval": 0.9})`` (or ``{"dataframe_records": [...], "params":
{"interval": 0.9}}`` over HTTP) answers a table: ``prediction``, ``lower`` and ``upper`` per row.
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np
import pandas as pd

from housing_assets.ml.intervals import ConformalIntervals

INTERVAL_PARAM = "interval"
#: The params a request may send, with their defaults (0: no interval, the plain prices).
PARAMS = {INTERVAL_PARAM: 0.0}


class PricePredictor(mlflow.pyfunc.PythonModel):
    """The pipeline and its intervals behind MLflow's pyfunc interface."""

    def __init__(self, pipeline, intervals: ConformalIntervals | None):
        self.pipeline = pipeline
        self.intervals = intervals

    # The pd.DataFrame hint tells MLflow not to infer a schema from the hints: the signature is
    # given at logging (from an input example, with the params).
    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        prices = np.asarray(self.pipeline.predict(model_input), dtype=float)
        level = float((params or {}).get(INTERVAL_PARAM) or 0.0)
        if level == 0.0:
            return prices
        if self.intervals is None or not 0 < level < 1:
            from mlflow.exceptions import MlflowException
            from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

            problem = (
                "this version has no calibrated intervals"
                if self.intervals is None
                else f"a level between 0 and 1 (exclusive) is needed, got {level:g}"
            )
            raise MlflowException(f"params.interval: {problem}", INVALID_PARAMETER_VALUE)
        lower, upper = self.intervals.bounds(model_input, prices, level)
        return pd.DataFrame({"prediction": prices, "lower": lower, "upper": upper})
