"""A machine's speed in two fixed figures, measured in the same run as a benchmark, so that
timings from different machines can be compared: a 20 M-iteration Python loop (the
interpreter) and a fixed LightGBM fit (numeric threads). Usable alone:

    .venv/bin/python -m benchmarks.calibration
"""

from __future__ import annotations

import json
import time


def python_loop_s(iterations: int = 20_000_000) -> float:
    start = time.perf_counter()
    total = 0
    for i in range(iterations):
        total += i
    return time.perf_counter() - start


def lightgbm_fit_s(threads: int) -> float:
    import numpy as np
    from lightgbm import LGBMRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(10_000, 20))
    y = X[:, 0] * 3 + np.sin(X[:, 1]) + rng.normal(scale=0.1, size=len(X))
    model = LGBMRegressor(n_estimators=200, num_leaves=31, n_jobs=threads, verbose=-1)
    start = time.perf_counter()
    model.fit(X, y)
    return time.perf_counter() - start


def calibrate() -> dict[str, float]:
    from housing_assets import settings

    threads = settings.threads()
    return {
        "python_loop_20m_s": round(python_loop_s(), 3),
        "lightgbm_fit_s": round(lightgbm_fit_s(threads), 3),
        "threads": threads,
    }


if __name__ == "__main__":
    print(json.dumps(calibrate(), indent=2))
