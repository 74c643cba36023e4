"""What a run imports before its first step, imported once (see ``code_server``).

Imports only: no model is fitted (an OpenMP pool used before a fork does not work in the
child), no store is opened and no thread is started.
"""

import gc

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot  # noqa: E402,F401
import mlflow  # noqa: E402
import mlflow.pyfunc  # noqa: E402,F401
import mlflow.sklearn  # noqa: E402,F401
import mlflow.store.model_registry.dbmodels.models  # noqa: E402,F401
import mlflow.store.tracking.dbmodels.models  # noqa: E402,F401
import PIL.Image  # noqa: E402,F401
import sqlalchemy.orm  # noqa: E402
import wandb  # noqa: E402,F401
import wandb.apis.public  # noqa: E402,F401  (first run of a process imports these)
import wandb.sdk.launch  # noqa: E402,F401
from dagster_mlflow.resources import MlFlow  # noqa: E402,F401

import housing_assets.definitions  # noqa: E402,F401  (Dagster, pandas, scikit-learn, the code)

sqlalchemy.orm.configure_mappers()  # MLflow's ORM classes, set up once (~1 s per process)
gc.freeze()  # everything above stays shared with the runs forked from here
