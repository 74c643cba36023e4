"""The benchmark's overhead arithmetic (benchmarks/run.py), on made-up runs."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from run import outside_ml_calls, overhead, seconds_outside_ml, wait_for_run_end  # noqa: E402

from housing_assets_tests.support import ML_ASSETS  # noqa: E402


def dagster_run(wall: float, ml: float) -> dict:
    return {"wall_s": wall, "compute_s": {step: ml / len(ML_ASSETS) for step in ML_ASSETS}}


def bare_run(wall: float, ml: float) -> dict:
    steps = [{"step": "raw_housing", "seconds": 0.2}]
    steps += [{"step": step, "seconds": ml / len(ML_ASSETS)} for step in ML_ASSETS]
    return {"wall_s": wall, "steps": [*steps, {"step": "result", "family": "boosting"}]}


def test_time_outside_the_ml_calls_of_either_kind_of_run():
    assert seconds_outside_ml(dagster_run(160.0, 145.0)) == pytest.approx(15.0)
    assert seconds_outside_ml(bare_run(150.0, 146.5)) == pytest.approx(3.5)


def test_the_drift_of_the_ml_calls_leaves_the_outside_ratio_alone():
    # Same orchestration cost (12 s more than bare outside the calls) in every pair, while the
    # ML calls themselves wander between runs: the wall ratios scatter, this one does not.
    dagster = [dagster_run(150.0 + 15.0, 150.0), dagster_run(130.0 + 15.0, 130.0)]
    bare = [bare_run(140.0 + 3.0, 140.0), bare_run(145.0 + 3.0, 145.0)]
    report = outside_ml_calls(dagster, bare)
    assert report["outside_ml_added_s"] == pytest.approx([12.0, 12.0])
    assert report["overhead_ratio_outside_ml"] == pytest.approx(
        ((143.0 + 12.0) / 143.0 + (148.0 + 12.0) / 148.0) / 2
    )


def test_runs_without_compute_s_give_no_outside_ratio():
    assert outside_ml_calls([{"wall_s": 100.0, "steps_s": {}}], [bare_run(90.0, 85.0)]) == {}


def test_overhead_of_cli_or_launched_runs_against_the_same_bare_runs():
    dagster = [dagster_run(w, w - 8.0) for w in (150.0, 170.0, 140.0)]
    bare = [bare_run(w, w - 3.0) for w in (145.0, 150.0, 160.0)]
    report = overhead(dagster, bare)
    assert report["dagster"]["wall_s"] == 150.0  # the median run
    assert report["overhead_ratio"] == pytest.approx(150.0 / 150.0)
    assert report["pair_ratios"] == pytest.approx([150 / 145, 170 / 150, 140 / 160])
    assert report["outside_ml_added_s"] == pytest.approx([5.0, 5.0, 5.0])


def test_waiting_for_a_launched_run_reads_its_status_from_the_run_storage(tmp_path):
    import sqlite3

    (tmp_path / "history").mkdir()
    with sqlite3.connect(tmp_path / "history" / "runs.db") as db:
        db.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, status TEXT)")
        db.execute("INSERT INTO runs (status) VALUES ('FAILURE'), ('STARTED')")
    with pytest.raises(TimeoutError, match="still STARTED"):  # the newest run, not the first
        wait_for_run_end(tmp_path, poll_s=0.01, timeout_s=0.05)
    with sqlite3.connect(tmp_path / "history" / "runs.db") as db:
        db.execute("UPDATE runs SET status = 'SUCCESS' WHERE id = 2")
    assert wait_for_run_end(tmp_path, poll_s=0.01, timeout_s=0.05) == "SUCCESS"
