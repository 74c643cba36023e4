"""The quick ("smoke") configuration: every step runs for real, on small grids and few trials.

Defined once, in ``smoke.yaml`` beside this module (``configs/smoke.yaml`` links to it, for
``dagster asset materialize ... -c configs/smoke.yaml``)."""

from pathlib import Path

import yaml

SMOKE_RUN_CONFIG: dict = yaml.safe_load((Path(__file__).parent / "smoke.yaml").read_text())
SMOKE_OPS_CONFIG: dict = SMOKE_RUN_CONFIG["ops"]
