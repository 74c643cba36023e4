"""One setting decides the threads of every step: HOUSING_THREADS, else the CPU affinity."""

import os
import subprocess
import sys

import pytest

from housing_assets.ml.models import FAMILIES


def _threads_in_a_process(env: dict, cpus: str | None = None) -> int:
    command = [
        sys.executable,
        "-c",
        "from housing_assets import settings; print(settings.threads())",
    ]
    if cpus is not None:
        command = ["taskset", "-c", cpus, *command]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_the_default_is_the_cores_this_process_may_use():
    env = {k: v for k, v in os.environ.items() if k != "HOUSING_THREADS"}
    assert _threads_in_a_process(env) == len(os.sched_getaffinity(0))
    assert _threads_in_a_process(env, cpus="0") == 1  # a container or taskset narrowing it
    assert _threads_in_a_process({**env, "HOUSING_THREADS": "3"}, cpus="0") == 3


def test_the_compute_resource_carries_it_to_the_models(monkeypatch):
    from housing_assets.resources import build_resources

    monkeypatch.setenv("HOUSING_THREADS", "5")
    assert build_resources()["compute"].threads == 5
    assert FAMILIES["boosting"].build({}, 5, seed=0).n_jobs == 5
    assert FAMILIES["forest"].build({}, 5, seed=0).n_jobs == 5


@pytest.mark.parametrize("family", ["boosting", "forest"])
def test_results_are_identical_for_a_seed_and_thread_count(synthetic_housing, family):
    from housing_assets.ml.cv import FoldCache, cv_metrics
    from housing_assets.ml.pipeline import FeatureSpec
    from housing_assets.ml.schema import FEATURE_COLUMNS, TARGET

    cache = FoldCache(
        synthetic_housing[FEATURE_COLUMNS],
        synthetic_housing[TARGET],
        FeatureSpec("median", n_clusters=3, random_state=0),
        n_folds=2,
        random_state=0,
    )
    params = {"n_estimators": 40}
    first = cv_metrics(FAMILIES[family].build(params, 2, seed=0), cache.folds())
    second = cv_metrics(FAMILIES[family].build(params, 2, seed=0), cache.folds())
    if family == "boosting":
        assert first == second  # bit for bit
    else:
        # A forest's threads add their trees' predictions in whatever order they finish:
        # equal up to the last bits of a float sum, not bit for bit (a spread across folds,
        # a difference of near-equal numbers, shows them at ~1e-12).
        assert first == pytest.approx(second, rel=1e-9)
