"""How long an asset's ML step took, apart from the asset's tracking, plots and storage."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def timed(step: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float]:
    """``step(*args, **kwargs)`` and the seconds it took; assets show them as ``compute_s``,
    which `benchmarks/run.py` compares with the bare script's time for the same call."""
    start = time.perf_counter()
    result = step(*args, **kwargs)
    return result, time.perf_counter() - start
