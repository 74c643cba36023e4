"""The benchmarks' arithmetic (benchmarks/run.py) and the results page they render
(benchmarks/report.py), on made-up runs and result files."""

import json

import pytest

from benchmarks import report
from benchmarks.run import outside_ml_calls, overhead, seconds_outside_ml, wait_for_run_end
from housing_assets_testkit import ML_ASSETS


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


CALIBRATION = {"python_loop_20m_s": 1.5, "lightgbm_fit_s": 0.4, "threads": 2}


def test_the_page_has_a_table_per_result_with_its_calibration_date_and_commit(tmp_path):
    serving = {
        "date": "2026-12-01 09:00 UTC",
        "commit": "abc1234",
        "calibration": CALIBRATION,
        "single_row": {"requests": 300, "p50_ms": 12.34, "p99_ms": 45.6, "mean_ms": 14.0},
        "rows_100": {"requests": 100, "p50_ms": 30.0, "p99_ms": 80.0, "mean_ms": 33.3},
    }
    (tmp_path / "serving_latency.json").write_text(json.dumps(serving))
    (tmp_path / "ad_hoc.json").write_text(json.dumps({"speed": {"rows_s": 1.5, "runs": [1, 2]}}))
    page = tmp_path / "page.md"
    report.write_page(tmp_path, page)
    text = page.read_text()

    assert text.startswith("# Benchmark results\n")
    assert "## Serving latency (`python -m benchmarks.serving_latency`)" in text
    assert (
        "Measured 2026-12-01 09:00 UTC at commit `abc1234`. Calibration: Python loop 1.50 s, "
        "LightGBM fit 0.40 s on 2 threads." in text
    )
    assert "| request | requests | p50 ms | p99 ms | mean ms |" in text
    assert "| 1 row | 300 | 12.3 | 45.6 | 14.0 |" in text
    # A result file no table knows about still gets one, flat, after the known ones.
    assert text.index("## `ad_hoc`") > text.index("## Serving latency")
    assert "No calibration recorded." in text
    assert "| speed.rows_s | 1.5 |" in text and "| speed.runs | 1, 2 |" in text
    # The benchmarks without a result are listed with their command, and nothing is dated.
    missing = text[text.index("## Not measured yet") :]
    assert "`python -m benchmarks.run`" in missing
    assert "serving_latency" not in missing
    assert "2026-" not in text.replace("2026-12-01 09:00 UTC", "")


def full_dagster_run(wall: float) -> dict:
    return {
        **dagster_run(wall, wall - 10.0),
        "steps_s": {"raw_housing": 1.0, "registered_model": 20.0},
        "test_metrics": {"rmse": 40123.4, "mape": 13.456, "within_10pct": 55.55},
        "family": "boosting",
        "cv_wmape": 12.345,
        "cv_rmse": 41000.0,
    }


def test_the_benchmark_table_shows_only_the_kinds_of_run_measured():
    launched = [full_dagster_run(w) for w in (105.0, 107.0)]
    bare = [bare_run(100.0, 95.0), bare_run(102.0, 97.0)]
    result = {
        "calibration": CALIBRATION,
        "configs": ["default"],
        "default": {
            "bare": bare[0],
            "bare_walls_s": [100.0, 102.0],
            "launched": overhead(launched, bare),
        },
        "scaling": [],
    }
    ((header, rows),) = report.BENCHMARKS["benchmark"].tables(result)
    table = {row[0]: row[1:] for row in rows}

    assert header == ["configuration", "default"]
    assert table["champion family"] == ["boosting"]
    assert table["test RMSE"] == ["40,123"]
    assert table["launched run walls (s)"] == ["105.0, 107.0"]
    assert table["launched run ÷ bare, median walls"] == [
        f"**{106 / 101:.3f}** (pairs {105 / 100:.3f}, {107 / 102:.3f})"
    ]
    assert not any(label.startswith("`dagster job execute`") for label in table)
    assert table["raw_housing (s), Dagster / bare"] == ["1.0 / 0.2"]
    assert table["geo_features (s), Dagster / bare"] == ["– / 19.0"]


def test_a_saved_result_is_stamped_and_a_trial_elsewhere_leaves_the_page_alone(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(report, "write_page", lambda *a: pytest.fail("the page was rendered"))
    path = report.save_result("parallel_tuning", {"calibration": CALIBRATION, "x": 1}, tmp_path)
    saved = json.loads(path.read_text())
    assert path == tmp_path / "parallel_tuning.json"
    assert saved["calibration"] == CALIBRATION and saved["x"] == 1
    assert saved["date"].endswith(" UTC")
    assert saved["commit"] == report.current_commit() != ""
    with pytest.raises(ValueError, match="no calibration"):
        report.save_result("parallel_tuning", {"x": 1}, tmp_path)


def test_the_committed_page_is_rendered_from_the_committed_results():
    assert report.PAGE.read_text() == report.render(report.load_results()), (
        "docs/benchmark-results.md is stale: run `python -m benchmarks.report`"
    )
