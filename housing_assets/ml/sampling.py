"""Bounded random samples, which keep neighbour methods linear in the data size."""

from __future__ import annotations

import numpy as np


def bounded_rows(n_rows: int, max_rows: int, random_state: int) -> np.ndarray | slice:
    """Indices of at most ``max_rows`` of ``n_rows`` rows: all of them, else a random sample."""
    if n_rows <= max_rows:
        return slice(None)
    return np.random.default_rng(random_state).choice(n_rows, max_rows, replace=False)
