"""How many threads a step may use, and how long its computation took."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from dagster import ConfigurableResource

T = TypeVar("T")


class Compute(ConfigurableResource):
    """LightGBM, forests, k-NN and joblib all take their threads from here (``HOUSING_THREADS``,
    else the cores this process may run on). Results are identical for a fixed seed and thread
    count."""

    threads: int

    def run(self, context, step: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``step(*args, threads=..., **kwargs)``; its duration becomes the asset's
        ``compute_s`` (what `benchmarks/run.py` compares with the bare script's time)."""
        start = time.perf_counter()
        result = step(*args, threads=self.threads, **kwargs)
        context.add_output_metadata({"compute_s": round(time.perf_counter() - start, 2)})
        return result
