"""The results page, docs/benchmark-results.md, rendered from benchmarks/results/*.json.

Each benchmark script saves its latest result there (``save_result``: its numbers with the
calibration measured in the same run, the date and the commit) and renders the page again.
The JSON files are committed, so earlier results are in their git history. By hand:

    .venv/bin/python -m benchmarks.report [--results DIR] [--page FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from housing_assets_testkit import CONTRACT_ASSETS, REPO_ROOT

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
PAGE = REPO_ROOT / "docs" / "benchmark-results.md"

Table = tuple[list[str], list[list[str]]]  # header, rows


def current_commit() -> str:
    """``git rev-parse --short HEAD`` of the checkout, or "unknown" outside one."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def add_out_argument(parser) -> None:
    """The ``--out`` option every benchmark takes: where its result file goes."""
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS_DIR,
        help="folder of the result (elsewhere than the default: a trial, the page is left alone)",
    )


def save_result(name: str, result: dict, out_dir: Path = RESULTS_DIR) -> Path:
    """Write ``result`` (which carries its ``calibration``) as ``out_dir/<name>.json``, stamped
    with the date and the commit, and render the page again if ``out_dir`` is the committed
    results folder (a result saved elsewhere is a trial and leaves the page alone)."""
    if "calibration" not in result:
        raise ValueError(f"the {name} result carries no calibration")
    stamped = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": current_commit(),
        **result,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(stamped, indent=2, default=float) + "\n")
    print(f"result: {path}", flush=True)
    if out_dir.resolve() == RESULTS_DIR.resolve():
        write_page()
        print(f"page:   {PAGE}", flush=True)
    return path


def load_results(results_dir: Path = RESULTS_DIR) -> dict[str, dict]:
    """Every ``<name>.json`` of ``results_dir``, by name."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))}


def write_page(results_dir: Path = RESULTS_DIR, page: Path = PAGE) -> None:
    page.write_text(render(load_results(results_dir)))


# --- the page ------------------------------------------------------------------------------


def render(results: dict[str, dict]) -> str:
    """The page: one section and table per result, known benchmarks first in their order, then
    any other result file (as a flat table), then the benchmarks with no result yet."""
    lines = [
        "# Benchmark results",
        "",
        "<!-- Rendered by `python -m benchmarks.report` from benchmarks/results/*.json: "
        "edit benchmarks/report.py, not this page. -->",
        "",
        "The latest result of each benchmark script in `benchmarks/`, run from the repository "
        "root as `.venv/bin/python -m benchmarks.<name>`. Each script saves its result in "
        "`benchmarks/results/<name>.json` and renders this page again; earlier results are in "
        "the git history of those files. What each script measures and how to run it: "
        "[benchmarks.md](benchmarks.md).",
        "",
        "Times depend on the machine and on whatever runs beside the benchmark (2 cores here). "
        "Each result carries a calibration measured in the same run: a 20 M-iteration Python "
        "loop (the interpreter) and a fixed LightGBM fit (the numeric threads). Compare times "
        "from different runs through it, not as they are.",
        "",
    ]
    names = [n for n in BENCHMARKS if n in results] + sorted(set(results) - set(BENCHMARKS))
    for name in names:
        known = BENCHMARKS.get(name)
        title = f"{known.title} (`{known.command}`)" if known else f"`{name}`"
        result = results[name]
        lines += [f"## {title}", "", _provenance(result), ""]
        if known:
            lines += [known.about, ""]
        for table in known.tables(result) if known else [_flat_table(result)]:
            lines += [*_markdown_table(table), ""]
    missing = [BENCHMARKS[n] for n in BENCHMARKS if n not in results]
    if missing:
        lines += ["## Not measured yet", ""]
        lines += [f"- {b.title}: `{b.command}`" for b in missing]
        lines.append("")
    return "\n".join(lines)


def _provenance(result: dict) -> str:
    calibration = result.get("calibration") or {}
    measured = f"Measured {result.get('date', 'at an unknown date')}"
    measured += f" at commit `{result['commit']}`." if result.get("commit") else "."
    if not calibration:
        return f"{measured} No calibration recorded."
    return (
        f"{measured} Calibration: Python loop {calibration['python_loop_20m_s']:.2f} s, "
        f"LightGBM fit {calibration['lightgbm_fit_s']:.2f} s on {calibration['threads']} threads."
    )


def _markdown_table(table: Table) -> list[str]:
    header, rows = table
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def _seconds(values) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def _ratio(report: dict) -> str:
    """The ratio of the median walls with each pair's ratio."""
    pairs = ", ".join(f"{r:.3f}" for r in report["pair_ratios"])
    return f"**{report['overhead_ratio']:.3f}** (pairs {pairs})"


def _flat_table(result: dict) -> Table:
    """Any result as ``quantity | value`` rows: its scalars and lists of scalars, dotted keys."""
    rows: list[list[str]] = []

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, list):
            if all(not isinstance(v, dict | list) for v in value):
                rows.append([prefix, ", ".join(_cell(v) for v in value)])
        else:
            rows.append([prefix, _cell(value)])

    walk("", {k: v for k, v in result.items() if k not in ("date", "commit", "calibration")})
    return ["quantity", "value"], rows


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# --- one table per benchmark ----------------------------------------------------------------


def _benchmark_tables(report: dict) -> list[Table]:
    """benchmarks/run.py: quality, walls, overhead ratios and seconds per step by configuration;
    the scaling runs, if any, in a second table."""
    configs = report["configs"]

    def dagster(c: str) -> dict:  # the CLI runs' measurements, else the launched runs'
        return report[c]["dagster"] if "dagster" in report[c] else report[c]["launched"]["dagster"]

    def row(label: str, cell: Callable[[str], str | None]) -> list[str]:
        return [label, *((cell(c) or "–") for c in configs)]

    rows = [
        row("champion family", lambda c: dagster(c)["family"]),
        row("test RMSE", lambda c: f"{dagster(c)['test_metrics']['rmse']:,.0f}"),
        row("test MAPE %", lambda c: f"{dagster(c)['test_metrics']['mape']:.2f}"),
        row("test within 10 %", lambda c: f"{dagster(c)['test_metrics']['within_10pct']:.1f}"),
        row("CV wMAPE % (training rows)", lambda c: f"{dagster(c)['cv_wmape']:.2f}"),
        row("bare script walls (s)", lambda c: _seconds(report[c]["bare_walls_s"])),
    ]
    for kind, label in (("cli", "`dagster job execute`"), ("launched", "launched run")):
        measured = {c: _dagster_runs(report[c], kind) for c in configs}
        if not any(measured.values()):
            continue
        rows += [
            row(
                f"{label} walls (s)",
                lambda c, m=measured: m[c] and _seconds(m[c]["dagster_walls_s"]),
            ),
            row(f"{label} ÷ bare, median walls", lambda c, m=measured: m[c] and _ratio(m[c])),
            row(
                f"{label} ÷ bare, outside the ML calls",
                lambda c, m=measured: (
                    m[c]
                    and "overhead_ratio_outside_ml" in m[c]
                    and f"{m[c]['overhead_ratio_outside_ml']:.3f}"
                ),
            ),
        ]
    for step in CONTRACT_ASSETS:

        def step_cell(c: str, step: str = step) -> str:
            dag = dagster(c)["steps_s"].get(step)
            bare = next(
                (s["seconds"] for s in report[c]["bare"]["steps"] if s.get("step") == step), None
            )
            return " / ".join("–" if v is None else f"{v:.1f}" for v in (dag, bare))

        rows.append(row(f"{step} (s), Dagster / bare", step_cell))
    tables = [(["configuration", *configs], rows)]
    if report.get("scaling"):
        scaling = report["scaling"]
        header = ["step (smoke, bare)", *(f"{s['scale']:g}x s / MB" for s in scaling), "exponent"]
        scale_rows = []
        for step in CONTRACT_ASSETS[1:]:
            cells = []
            for s in scaling:
                r = next(r for r in s["steps"] if r.get("step") == step)
                cells.append(f"{r['seconds']:.1f} / {r['peak_rss_mb']:,.0f}")
            scale_rows.append([step, *cells, f"{report['growth_exponents'][step]:.2f}"])
        tables.append((header, scale_rows))
    return tables


def _dagster_runs(config_report: dict, kind: str) -> dict | None:
    """A configuration's `dagster job execute` runs ("cli": their overhead keys sit at the top
    of its report) or runs launched through the code server ("launched"), if measured."""
    if kind == "cli":
        return config_report if "dagster" in config_report else None
    return config_report.get("launched")


def _retrain_latency_tables(report: dict) -> list[Table]:
    job = report["retrain_job"]
    rows = [
        ["configuration; code server", f"{report['config']}; {report['code_server']}"],
        [
            "sensor interval; model server's alias poll (s)",
            f"{report['sensor_interval_s']:g}; {report['serve_poll_s']:g}",
        ],
        ["first training run (s)", f"{report['first_run_s']:.1f}"],
        ["landing → the tick that takes the batch (s)", f"{job['landing_to_tick_start_s']:.1f}"],
        ["the tick (s)", f"{job['tick_s']:.1f}"],
        ["run created → started (s)", f"{job['run_created_to_started_s']:.1f}"],
        ["the run (s)", f"{job['run_wall_s']:.1f}"],
        *([f"the run: {step} (s)", f"{s:.1f}"] for step, s in job["steps_s"].items()),
        ["run ended → new version served (s)", f"{job['run_end_to_served_s']:.1f}"],
        ["**landing → served (s)**", f"**{report['landing_to_served_s']:.1f}**"],
    ]
    return [(["phase", "value"], rows)]


def _side_by_side_tables(report: dict) -> list[Table]:
    versions = ("baseline", "current")
    runs = {v: [r for r in report["runs"] if r["version"] == v] for v in versions}

    def metric(v: str, name: str, fmt: str) -> str:
        return ", ".join(format(r["test_metrics"][name], fmt) for r in runs[v])

    rows = [
        ["commit", report["baseline"], report.get("commit", "")],
        ["walls (s)", *(_seconds(r["wall_s"] for r in runs[v]) for v in versions)],
        ["median wall (s)", *(f"{report['median_wall_s'][v]:.1f}" for v in versions)],
        ["test RMSE", *(metric(v, "rmse", ",.0f") for v in versions)],
        ["test MAPE %", *(metric(v, "mape", ".2f") for v in versions)],
        ["current ÷ baseline, median walls", "", f"**{report['ratio_of_medians']:.3f}**"],
    ]
    return [(["", *versions], rows)]


def _parallel_tuning_tables(report: dict) -> list[Table]:
    rows = []
    for setup, label in (("machine", "this machine"), ("per_worker", "per worker")):
        for workers in (1, 2, 3):
            r = report[setup].get(f"workers_{workers}")
            if r is None:
                continue
            per_minute = r.get("trials_per_minute")
            rows.append(
                [
                    f"{label}: {workers} worker(s), {r['threads_total']} thread(s) in all",
                    f"{r['seconds']:.1f}",
                    str(r["finished_trials"]),
                    "" if per_minute is None else f"{per_minute:.1f}",
                    f"{r['best_value']:.3f}",
                ]
            )
        rows.append([f"**{label}: 2 workers ÷ 1**", f"**{report[setup]['ratio_2_over_1']:.2f}**"])
        rows[-1] += ["", "", ""]
    header = ["setup", "seconds", "finished trials", "trials/min", "best CV value"]
    return [(header, rows)]


def _growth_tables(report: dict) -> list[Table]:
    rows = [
        [
            f"{level['accepted_batches']:,}",
            f"{level['raw_rows']:,}",
            f"{level['median_tick_s'] * 1000:.0f}",
            f"{level['retrain']['wall_s']:.1f}",
            f"{level['retrain_s_per_1k_rows']:.2f}",
            f"{level['retrain']['peak_rss_mb']:,.0f}",
            f"{level['landing_to_registered_s']:.1f}",
        ]
        for level in report["levels"].values()
    ]
    header = [
        "accepted batches",
        "raw rows",
        "sensor tick, median (ms)",
        "retrain (s)",
        "retrain s / 1,000 rows",
        "retrain peak RSS (MB)",
        "landing → registered (s)",
    ]
    return [(header, rows)]


def _serving_latency_tables(report: dict) -> list[Table]:
    rows = [
        [
            label,
            str(report[key]["requests"]),
            f"{report[key]['p50_ms']:.1f}",
            f"{report[key]['p99_ms']:.1f}",
            f"{report[key]['mean_ms']:.1f}",
        ]
        for key, label in (("single_row", "1 row"), ("rows_100", "100 rows"))
    ]
    return [(["request", "requests", "p50 ms", "p99 ms", "mean ms"], rows)]


def _storage_backends_tables(report: dict) -> list[Table]:
    rows = [
        [label, _seconds(report[key]["runs_s"]), f"{report[key]['median_s']:.1f}"]
        for key, label in (("local", "local disk"), ("gcs", "GCS bucket (local server)"))
    ]
    rows.append(["**GCS ÷ local, medians**", "", f"**{report['ratio_gcs_over_local']:.2f}**"])
    return [(["backend", "runs (s)", "median (s)"], rows)]


def _sensor_tick_tables(report: dict) -> list[Table]:
    full = str(report["batches"])
    rows = [
        ["accepted batches in the full zone; rows a batch", f"{full}; {report['rows_per_batch']}"],
        ["filling it: all ticks (s)", f"{report['fill_s']:.1f}"],
        [
            "first tick of the empty zone, indexing the base dataset (s)",
            f"{report['first_tick_s']:.3f}",
        ],
        [
            f"median tick, 0 accepted batches (s; {report['repeats']} ticks)",
            f"{report['median_tick_s']['0']:.3f}",
        ],
        [f"median tick, {full} accepted batches (s)", f"{report['median_tick_s'][full]:.3f}"],
        [f"**{full} ÷ 0 accepted batches**", f"**{report['ratio_after_vs_before']:.2f}**"],
        ["row-key index on disk (bytes)", f"{report['index_bytes']:,}"],
        [
            "parsing the base dataset, before / after (s)",
            f"{report['calibration_before_s']:.3f} / {report['calibration_after_s']:.3f}",
        ],
    ]
    return [(["quantity", "value"], rows)]


def _stack_run_tables(report: dict) -> list[Table]:
    stack, outside = report["stack_runs"], report["outside_runs"]
    rows = [
        ["wall (s)", _seconds(r["wall_s"] for r in stack), _seconds(r["wall_s"] for r in outside)],
        [
            "median wall (s)",
            f"{report['stack_wall_s']:.1f}",
            f"{report['outside_wall_s']:.1f}",
        ],
        ["submitted → run started (s)", _seconds(r["submitted_to_start_s"] for r in stack), ""],
        ["run started → ended (s)", _seconds(r["run_s"] for r in stack), ""],
        ["**stack ÷ outside, median walls**", f"**{report['ratio_wall']:.2f}**", ""],
    ]
    steps = [
        [step, f"{s['stack_s']:.1f}", f"{s['outside_s']:.1f}", f"{s['extra_s']:+.1f}"]
        for step, s in report["steps"].items()
    ]
    return [
        (["", "stack", "outside"], rows),
        (["step (median)", "stack (s)", "outside (s)", "stack − outside (s)"], steps),
    ]


@dataclass(frozen=True)
class Benchmark:
    title: str
    command: str
    about: str
    tables: Callable[[dict], list[Table]]


# The benchmarks by result name (the page's order).
BENCHMARKS: dict[str, Benchmark] = {
    "benchmark": Benchmark(
        "Quality, time per asset and orchestration overhead",
        "python -m benchmarks.run",
        "The full job in a fresh Dagster home against the same ML work as a bare script "
        "(`benchmarks/bare_pipeline.py`: the same library functions, no Dagster, MLflow or "
        "W&B), alternated in pairs. Dagster runs are `dagster job execute` (CLI) and/or runs "
        "launched through `housing-code-server` (as from the UI, the sensor and the compose "
        "stack; run created → ended). Quality and steps: the Dagster run with the median wall. "
        '"Outside the ML calls": the bare wall plus what the run adds outside the timed ML '
        "calls, which leaves out the calls' own run-to-run noise.",
        _benchmark_tables,
    ),
    "retrain_latency": Benchmark(
        "Landing → served",
        "python -m benchmarks.retrain_latency",
        "A fresh project trained once, then the deployed pieces (code server, `dagster-daemon` "
        "with the retraining sensor, `housing-serve` following `champion`); a batch of new rows "
        "is renamed into the landing folder and the clock runs until `/invocations` answers "
        "with the new version.",
        _retrain_latency_tables,
    ),
    "side_by_side": Benchmark(
        "Two versions of the full default run, alternated",
        "python -m benchmarks.side_by_side --baseline REF",
        "`dagster job execute` of a baseline commit (a temporary git worktree) and of the "
        "current code, alternated in pairs, each in a fresh Dagster home and data folder.",
        _side_by_side_tables,
    ),
    "parallel_tuning": Benchmark(
        "Optuna trials on one, two or three worker processes",
        "python -m benchmarks.parallel_tuning",
        "The same number of finished trials on the pipeline's folds of the real training rows, "
        "one study in SQLite storage shared by the workers.",
        _parallel_tuning_tables,
    ),
    "growth": Benchmark(
        "Cost as data grows",
        "python -m benchmarks.growth",
        "One project, the quick pipeline once, then batches of 200 real rows accepted by real "
        "sensor ticks; at each level three more ticks are timed and the retrain the last one "
        "requested runs under `/usr/bin/time` (wall, peak memory). Goals: a flat tick, a "
        "retrain linear in rows or better.",
        _growth_tables,
    ),
    "stack_run": Benchmark(
        "A run in the compose stack against the same run outside it",
        "python -m benchmarks.stack_run",
        "The shipped compose stack (real volumes, MLflow server, PostgreSQL, idle services), "
        "each run submitted through GraphQL and run in a container of its own, alternated with "
        "`dagster job execute` of the same job in one local project folder (SQLite MLflow "
        "store). Stack wall: submitted → success, the queue and the container's start "
        "included.",
        _stack_run_tables,
    ),
    "serving_latency": Benchmark(
        "Serving latency",
        "python -m benchmarks.serving_latency",
        "`housing-serve` with the champion of the project's MLflow store, sequential requests "
        "from a second process.",
        _serving_latency_tables,
    ),
    "storage_backends": Benchmark(
        "Storage backends",
        "python -m benchmarks.storage_backends",
        "The smoke job by `dagster job execute`, alternately on local disk and on a bucket of a "
        "local GCS server, each in a fresh Dagster home.",
        _storage_backends_tables,
    ),
    "sensor_tick": Benchmark(
        "One tick of the retraining sensor as accepted data grows",
        "python -m benchmarks.sensor_tick",
        "The sensor's evaluation with one new batch file, in a landing zone with no accepted "
        "batch and in one with many, measured in alternation; real Dagster instance and "
        "resources, the real dataset.",
        _sensor_tick_tables,
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    parser.add_argument("--page", type=Path, default=PAGE)
    args = parser.parse_args()
    write_page(args.results, args.page)
    print(f"{args.page} rendered from {len(load_results(args.results))} result(s)")


if __name__ == "__main__":
    main()
