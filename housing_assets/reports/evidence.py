"""What a step shows a person, as data: one :class:`Evidence` value per step.

Builders in ``housing_assets.reports.steps`` turn a step's result into evidence (pure functions,
no Dagster, MLflow or W&B); the ``tracking`` resource writes it to all three: numbers, text,
JSON, tables and figures to the asset's Dagster metadata; the same tables, figures and
numbers to one W&B run; and, where ``mlflow`` is set, params, metrics and text artifacts to
one MLflow run nested under the Dagster run's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass
class MlflowRecord:
    """One MLflow run of a step: its name, params, metrics, tags and text artifacts."""

    run_name: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)  # artifact file name -> content


@dataclass
class Evidence:
    """A step's counts, choices and why, tables, figures and metrics.

    ``kind`` names the W&B run (``<kind>-<run id>``, job type ``kind``); ``values`` are numbers,
    strings and booleans shown as they are; ``summary`` are the values also put in the W&B
    run's summary (all of ``values`` if None); ``markdown`` are explanations; ``json`` is
    structured metadata; ``tables`` and ``figures`` (PNG bytes) appear in the UI and in W&B.
    """

    kind: str
    config: dict[str, Any] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    markdown: dict[str, str] = field(default_factory=dict)
    json: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    table_formats: dict[str, str] = field(default_factory=dict)  # floatfmt per table
    figures: dict[str, bytes] = field(default_factory=dict)
    wandb_tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # W&B only
    mlflow: MlflowRecord | None = None
    wandb: bool = True  # False: no W&B run of its own (the step logs its W&B runs itself)

    def wandb_summary(self) -> dict[str, Any]:
        return dict(self.values if self.summary is None else self.summary)
