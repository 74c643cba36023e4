"""What a run imports before its first step, imported once by the forkserver of
``housing-code-server`` (see ``code_server``; opt-in, like the server itself).

Imports only: no model is fitted (an OpenMP pool used before a fork does not work in the
child), no store is opened, no thread or process is started (W&B's service is started by
each run's first W&B run, in the run's own process), and no process-wide setting is changed
(no matplotlib backend is selected: the reports render with Agg through ``Figure.savefig``).

W&B's first run in a process imports the rest of W&B, its launch models among them: pydantic
models whose creation asks ``inspect.getmodule`` of every import frame, a scan of all loaded
modules per frame once the whole stack is loaded. Imported here, once, a run's first W&B run
pays only what every W&B run pays, plus starting its W&B service (~0.3 s): 0.43-0.70 s instead
of 1.85-2.85 s when the forkserver leaves W&B to the run (later W&B runs: 0.12-0.30 s).
"""

import gc

import matplotlib.backends.backend_agg  # noqa: F401  (what Figure.savefig renders PNG with)
import matplotlib.figure  # noqa: F401
import mlflow
import mlflow.pyfunc  # noqa: F401
import mlflow.sklearn  # noqa: F401
import mlflow.store.model_registry.dbmodels.models  # noqa: F401
import mlflow.store.tracking.dbmodels.models  # noqa: F401
import PIL.Image  # noqa: F401
import sqlalchemy.orm
import wandb  # noqa: F401
import wandb.apis.public  # noqa: F401  (imported by a process's first W&B run)
import wandb.sdk.launch  # noqa: F401
import wandb.sdk.launch.inputs.files  # noqa: F401
import wandb.sdk.launch.inputs.internal  # noqa: F401
import wandb.sdk.launch.inputs.schema  # noqa: F401
from dagster_mlflow.resources import MlFlow  # noqa: F401

import housing_assets.definitions  # noqa: F401  (Dagster, pandas, scikit-learn, the code)

sqlalchemy.orm.configure_mappers()  # MLflow's ORM classes, set up once (~1 s per process)
gc.freeze()  # everything above stays shared with the runs forked from here
