"""The project's benchmark: quality, time per asset, orchestration overhead and scaling.

    .venv/bin/python -m benchmarks.run [--source PATH_OR_URL] [--scales 1 2 4 8] [--skip-default]

Saves benchmarks/results/benchmark.json (and renders docs/benchmark-results.md), with a fuller
Markdown report (benchmark.md) and PNG plots beside it, not committed. Every measurement runs in
a fresh process, one at a time, on a fresh Dagster home and data folder:
- the full Dagster materialization (`dagster job execute`) for the default and the smoke
  configurations, per-asset times from the Dagster event log;
- the same job launched through `housing-code-server` (the path of the UI, the sensor and the
  compose stack: runs forked from a preloaded process; `--no-launched` skips these);
- the same ML work as a bare script (benchmarks/bare_pipeline.py, the same library functions, no
  Dagster, MLflow or W&B) for the overhead ratio;
- the bare smoke pipeline on 1x, 2x, 4x and 8x the rows (resampled with jitter), time and peak
  memory per step, with the growth exponent of each step fitted on a log-log scale.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.calibration import calibrate
from benchmarks.report import add_out_argument, save_result
from housing_assets.ml.metrics import BLOG_PIPELINE_TEST_METRICS, GERON_TEST_METRICS
from housing_assets_testkit import (
    CONTRACT_ASSETS,
    ML_ASSETS,
    REPO_ROOT,
    default_source,
    execute_job_cli,
    fresh_process_env,
    launch_job_cli,
    launch_runs_at_once,
    warm_code_server,
)

STEPS = CONTRACT_ASSETS  # the seven assets, in pipeline order
ANCHORS = {
    "blog pipeline (tuned RandomForest)": BLOG_PIPELINE_TEST_METRICS,
    "Géron, Hands-On ML 3rd ed.": GERON_TEST_METRICS,
}


def dagster_run(job: str, source: str) -> dict:
    """One `dagster job execute` in a fresh home; wall time, per-step times, final metadata."""
    with tempfile.TemporaryDirectory() as tmp:
        env = fresh_process_env(tmp, source)
        start = time.perf_counter()
        execute_job_cli(job, env, check=True, timeout=None)
        wall = time.perf_counter() - start
        return {"wall_s": wall, **probe_run(env)}


def launched_run(job: str, source: str) -> dict:
    """One run of ``job`` launched through `housing-code-server` in a fresh home, as the UI, the
    sensor and the compose stack launch runs (launched at once, not queued for a daemon). The
    server is up and warm before the launch, as a deployed one is; the wall time is from the
    run's creation to its end, as Dagster records them (the `dagster job launch` client that
    creates it is the UI's part, not the run's)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = fresh_process_env(tmp, source)
        launch_runs_at_once(env)
        with warm_code_server(env, tmp) as workspace:
            launch_job_cli(job, env, workspace, check=True)
            status = wait_for_run_end(Path(env["DAGSTER_HOME"]))
            if status != "SUCCESS":
                raise RuntimeError(f"the launched {job} ended {status}; see {tmp}")
            wall = json.loads(_run_probe(env, _LAUNCHED_PROBE))["wall_s"]
        return {"wall_s": wall, **probe_run(env)}


def wait_for_run_end(dagster_home: Path, poll_s: float = 2.0, timeout_s: float = 3600) -> str:
    """The status of the newest run in ``dagster_home``'s SQLite run storage once it has ended.
    Read with sqlite3 in this process, not through a Dagster instance: importing Dagster costs
    ~1.5 s of CPU, which a waiting process would take from the run it measures on two cores."""
    import sqlite3

    database = dagster_home / "history" / "runs.db"
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            (status,) = db.execute("SELECT status FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"the run in {dagster_home} is still {status} after {timeout_s} s")
        time.sleep(poll_s)


_LAUNCHED_PROBE = """
import json
from dagster import DagsterInstance
record = DagsterInstance.get().get_run_records(limit=1)[0]
print(json.dumps({"wall_s": record.end_time - record.create_timestamp.timestamp()}))
"""


def _run_probe(env: dict[str, str], code: str, cwd: Path = REPO_ROOT) -> str:
    """The last line ``code`` prints, run in a fresh process with ``env``."""
    probe = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, check=True, capture_output=True, text=True
    )
    return probe.stdout.strip().splitlines()[-1]


def probe_run(env: dict[str, str], cwd: Path = REPO_ROOT) -> dict:
    """Per-step times, test metrics and tuning result of the newest run in the Dagster home of
    ``env``, read from its event log in a fresh process (the code in ``cwd``)."""
    return json.loads(_run_probe(env, _PROBE, cwd))


_PROBE = (
    f"ML_ASSETS = {ML_ASSETS!r}"
    + """
import json
from dagster import AssetKey, DagsterInstance
instance = DagsterInstance.get()
run = instance.get_runs(limit=1)[0]
steps = {s.step_key: s.end_time - s.start_time for s in instance.get_run_step_stats(run.run_id)}
meta = instance.get_latest_materialization_event(AssetKey("registered_model")).asset_materialization.metadata
tuned = instance.get_latest_materialization_event(AssetKey("tuned_params")).asset_materialization.metadata
test = {k[len("test_"):]: v.value for k, v in meta.items() if k.startswith("test_") and k != "test_metrics"}
compute = {}  # absent from versions before `compute_s` (side_by_side.py's baselines)
for key in ML_ASSETS:
    event = instance.get_latest_materialization_event(AssetKey(key))
    if event and "compute_s" in event.asset_materialization.metadata:
        compute[key] = event.asset_materialization.metadata["compute_s"].value
print(json.dumps({"steps_s": steps, "compute_s": compute, "test_metrics": test, "family": tuned["family"].value,
                  "cv_wmape": tuned["best_cv_wmape"].value, "cv_rmse": tuned["best_cv_rmse"].value}))
"""
)


def bare_run(config: str, source: str, scale: float = 1.0, tune_family: str | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "bare.json")
        extra = ["--tune-family", tune_family] if tune_family else []
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.bare_pipeline",
                "--config",
                config,
                "--scale",
                str(scale),
                "--source",
                source,
                "--out",
                str(out),
                *extra,
            ],
            cwd=REPO_ROOT,
            check=True,
            capture_output=True,
        )
        wall = time.perf_counter() - start
        steps = json.loads(out.read_text())
    return {"wall_s": wall, "steps": steps}


def seconds_outside_ml(run: dict) -> float:
    """A run's wall time minus its ML calls (ML_ASSETS): process start, orchestration, tracking,
    plots, storage. Dagster runs carry the calls' times as `compute_s`, the bare script as its
    step times."""
    if "compute_s" in run:
        return run["wall_s"] - sum(run["compute_s"][step] for step in ML_ASSETS)
    steps = {s["step"]: s["seconds"] for s in run["steps"] if "seconds" in s}
    return run["wall_s"] - sum(steps[step] for step in ML_ASSETS)


def outside_ml_calls(dagster_runs: list[dict], bare_runs: list[dict]) -> dict:
    """What the Dagster run adds outside the ML calls, pair by pair, and the overhead ratio that
    adds only that to the bare wall. The same ML calls' times wander by +-10 % between two
    runs on these machines (the wall ratio of one pair ranged 0.97-1.24 on 2026-11-29); time
    outside them does not, so this ratio shows what orchestration and tracking cost without the
    drift. It leaves out any slowdown of the ML calls themselves inside the run, which the wall
    ratio keeps: both are reported."""
    if not all("compute_s" in d and len(d["compute_s"]) == len(ML_ASSETS) for d in dagster_runs):
        return {}
    dagster_outside = [seconds_outside_ml(d) for d in dagster_runs]
    bare_outside = [seconds_outside_ml(b) for b in bare_runs]
    added = [d - b for d, b in zip(dagster_outside, bare_outside, strict=True)]
    return {
        "outside_ml_dagster_s": dagster_outside,
        "outside_ml_bare_s": bare_outside,
        "outside_ml_added_s": added,
        "overhead_ratio_outside_ml": statistics.median(
            (b["wall_s"] + a) / b["wall_s"] for b, a in zip(bare_runs, added, strict=True)
        ),
    }


def overhead(dagster_runs: list[dict], bare_runs: list[dict]) -> dict:
    """Dagster runs against the bare script's, pair by pair: the median run, the walls, the
    ratio of the median walls (the mean of the middle two for an even count), each alternating
    pair's own ratio (the spread) and the time outside the ML calls."""
    return {
        "dagster": _median_run(dagster_runs),
        "dagster_walls_s": [r["wall_s"] for r in dagster_runs],
        "overhead_ratio": statistics.median(r["wall_s"] for r in dagster_runs)
        / statistics.median(r["wall_s"] for r in bare_runs),
        "pair_ratios": [
            d["wall_s"] / b["wall_s"] for d, b in zip(dagster_runs, bare_runs, strict=True)
        ],
        **outside_ml_calls(dagster_runs, bare_runs),
    }


def _dagster(config_report: dict) -> dict:
    """A configuration's Dagster measurements for the tables: the CLI runs', else (`--no-cli`)
    the launched runs'."""
    return config_report if "dagster" in config_report else config_report["launched"]


def _median_run(runs: list[dict]) -> dict:
    """The run with the median wall time (the lower middle one for an even count)."""
    return sorted(runs, key=lambda r: r["wall_s"])[(len(runs) - 1) // 2]


def _step_rows(scaling: list[dict], step: str) -> list[dict]:
    """One step's measurements across the scaling runs, smallest data first."""
    return [r for s in scaling for r in s["steps"] if r.get("step") == step]


def growth_exponents(scaling: list[dict]) -> dict[str, float]:
    """Slope of log(time) against log(rows) per step (1 = linear; n log n over 1x-8x of this
    data is about 1.1-1.2)."""
    out = {}
    for step in STEPS[1:]:
        rows = _step_rows(scaling, step)
        if len(rows) >= 2:
            x = np.log([r["rows"] for r in rows])
            y = np.log([max(r["seconds"], 1e-3) for r in rows])
            out[step] = float(np.polyfit(x, y, 1)[0])
    return out


def plots(scaling: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for key, label, name in [
        ("seconds", "seconds", "scaling_time.png"),
        ("peak_rss_mb", "peak RSS (MB)", "scaling_memory.png"),
    ]:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for step in STEPS[1:]:
            rows = _step_rows(scaling, step)
            ax.plot([r["rows"] for r in rows], [r[key] for r in rows], marker="o", label=step)
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="rows",
            ylabel=label,
            title=f"Smoke pipeline: {label} per step vs rows",
        )
        ax.legend(fontsize=8)
        fig.savefig(out / name, dpi=90, bbox_inches="tight")
        plt.close(fig)


def markdown(report: dict) -> str:
    lines = [
        "# housing_assets benchmark",
        "",
        f"Machine: {os.cpu_count()} cores. "
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "Calibration (same run; compare machines by these): 20 M-iteration Python loop "
        f"{report['calibration']['python_loop_20m_s']:.2f} s, fixed LightGBM fit "
        f"{report['calibration']['lightgbm_fit_s']:.2f} s on "
        f"{report['calibration']['threads']} threads.",
        "",
    ]
    if "default" in report:
        d = _dagster(report["default"])["dagster"]
        m = d["test_metrics"]
        lines += [
            "## Quality (default configuration, contract test split)",
            "",
            "| system | test RMSE | MAPE % | within 10 % |",
            "|---|---|---|---|",
            f"| **housing_assets champion ({d['family']})** | **{m['rmse']:,.0f}** | "
            f"**{m['mape']:.2f}** | **{m['within_10pct']:.1f}** |",
        ]
        for name, a in ANCHORS.items():
            lines.append(
                f"| {name} | {a['rmse']:,.0f} | {a.get('mape', '–')} | {a.get('within_10pct', '–')} |"
            )
        lines += [
            "",
            f"Cross-validated on training rows: wMAPE {d['cv_wmape']:.2f} %, "
            f"RMSE {d['cv_rmse']:,.0f}.",
            "",
        ]
    lines += [
        "## Time per asset (seconds)",
        "",
        "| step | " + " | ".join(f"{c} Dagster | {c} bare" for c in report["configs"]) + " |",
        "|---|" + "---|---|" * len(report["configs"]),
    ]
    for step in STEPS:
        cells = []
        for c in report["configs"]:
            dag = _dagster(report[c])["dagster"]["steps_s"].get(step, float("nan"))
            bare = next(
                (s["seconds"] for s in report[c]["bare"]["steps"] if s.get("step") == step),
                float("nan"),
            )
            cells += [f"{dag:.1f}", f"{bare:.1f}"]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    lines.append(
        "| **whole process (wall)** | "
        + " | ".join(
            f"**{_dagster(report[c])['dagster']['wall_s']:.1f}** | "
            f"**{report[c]['bare']['wall_s']:.1f}**"
            for c in report["configs"]
        )
        + " |"
    )
    cli_configs = [c for c in report["configs"] if "overhead_ratio" in report[c]]
    lines += [""]
    if cli_configs:
        lines += [
            "Orchestration overhead (`dagster job execute` ÷ bare script, whole processes, "
            "median walls): "
            + ", ".join(
                f"{c} **{report[c]['overhead_ratio']:.3f}** (pairs: "
                + ", ".join(f"{r:.3f}" for r in report[c]["pair_ratios"])
                + ")"
                for c in cli_configs
            )
            + ".",
            "",
        ]
    lines += [
        "The per-step table shows the Dagster run with the median wall time (the CLI run's, "
        "if measured). The bare script runs the same library functions without Dagster, "
        "MLflow or W&B, so the ratio includes experiment tracking as well as orchestration.",
        "",
    ]
    for c in report["configs"]:
        if "launched" in report[c]:
            r = report[c]["launched"]
            lines += [
                f"Runs launched through `housing-code-server` ({c}; as from the UI, the sensor "
                "and the compose stack, forked from a preloaded process; run created → ended): "
                + ", ".join(f"{w:.1f}" for w in r["dagster_walls_s"])
                + f" s; ÷ bare **{r['overhead_ratio']:.3f}** (pairs: "
                + ", ".join(f"{x:.3f}" for x in r["pair_ratios"])
                + ")"
                + (
                    "; outside the ML calls "
                    + ", ".join(f"{x:.1f}" for x in r["outside_ml_dagster_s"])
                    + f" s, the bare wall plus what that adds: **{r['overhead_ratio_outside_ml']:.3f}**"
                    if "overhead_ratio_outside_ml" in r
                    else ""
                )
                + ".",
                "",
            ]
    for c in report["configs"]:
        if "overhead_ratio_outside_ml" in report[c]:
            r = report[c]
            lines += [
                f"Outside the ML calls ({c}): Dagster "
                + ", ".join(f"{s:.1f}" for s in r["outside_ml_dagster_s"])
                + " s, bare "
                + ", ".join(f"{s:.1f}" for s in r["outside_ml_bare_s"])
                + " s; added per pair "
                + ", ".join(f"{s:.1f}" for s in r["outside_ml_added_s"])
                + f" s; the bare wall plus that: **{r['overhead_ratio_outside_ml']:.3f}** "
                "(median of the pairs; it leaves out the noise of the ML calls and any slowdown "
                "of them inside the run).",
                "",
            ]
    if report.get("scaling"):
        lines += [
            "## Scaling (smoke configuration, bare pipeline, tuned family fixed to boosting)",
            "",
            "| step | "
            + " | ".join(f"{s['scale']:g}x s | {s['scale']:g}x MB" for s in report["scaling"])
            + " | exponent |",
            "|---|" + "---|---|" * len(report["scaling"]) + "---|",
        ]
        for step in STEPS[1:]:
            cells = []
            for s in report["scaling"]:
                r = next(r for r in s["steps"] if r.get("step") == step)
                cells += [f"{r['seconds']:.1f}", f"{r['peak_rss_mb']:,.0f}"]
            lines.append(
                f"| {step} | " + " | ".join(cells) + f" | {report['growth_exponents'][step]:.2f} |"
            )
        over = [s for s, e in report["growth_exponents"].items() if e > 1.25]
        lines += [
            "",
            "Exponent: slope of log(time) on log(rows); 1.0 is linear, n log n is "
            "about 1.1-1.2 over this range. Steps above 1.25: "
            + (", ".join(over) if over else "none")
            + ".",
            "",
            "![time](scaling_time.png) ![memory](scaling_memory.png)",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=default_source())
    parser.add_argument(
        "--scales",
        type=float,
        nargs="*",
        default=[1, 2, 4, 8],
        help="data sizes for the scaling runs (none: skip them)",
    )
    parser.add_argument(
        "--configs", nargs="+", default=["default", "smoke"], choices=["default", "smoke"]
    )
    parser.add_argument("--skip-default", action="store_true", help="smoke configuration only")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="Dagster/bare pairs per configuration (alternating; medians reported)",
    )
    parser.add_argument(
        "--no-launched",
        dest="launched",
        action="store_false",
        help="skip the runs launched through housing-code-server (CLI runs and bare only)",
    )
    parser.add_argument(
        "--no-cli",
        dest="cli",
        action="store_false",
        help="skip the `dagster job execute` runs (launched runs and bare only)",
    )
    add_out_argument(parser)
    args = parser.parse_args()
    if not (args.cli or args.launched):
        parser.error("--no-cli and --no-launched leave no Dagster run to measure")
    args.out.mkdir(parents=True, exist_ok=True)

    configs = ["smoke"] if args.skip_default else args.configs
    report: dict = {"configs": configs, "calibration": calibrate()}
    for config in configs:
        job = "housing_pipeline_job" if config == "default" else "housing_smoke_job"
        kinds = {
            "CLI Dagster run": functools.partial(dagster_run, job, args.source),
            "launched Dagster run": functools.partial(launched_run, job, args.source),
            "bare script": functools.partial(bare_run, config, args.source),
        }
        if not args.cli:
            del kinds["CLI Dagster run"]
        if not args.launched:
            del kinds["launched Dagster run"]
        runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
        for i in range(args.repeats):
            # Alternating, and every other repeat in reverse order (A B, B A): a machine that
            # speeds up or slows down over the benchmark favours neither side.
            for kind in list(kinds)[:: -1 if i % 2 else 1]:
                print(f"[{config}] {kind} {i + 1} ...", flush=True)
                runs[kind].append(kinds[kind]())
        bare_runs = runs["bare script"]
        report[config] = {
            "bare": _median_run(bare_runs),
            "bare_walls_s": [r["wall_s"] for r in bare_runs],
        }
        if args.cli:
            report[config] |= overhead(runs["CLI Dagster run"], bare_runs)
        if args.launched:
            report[config]["launched"] = overhead(runs["launched Dagster run"], bare_runs)
        print(
            f"[{config}] Dagster {_dagster(report[config])['dagster']['wall_s']:.1f} s, bare "
            f"{report[config]['bare']['wall_s']:.1f} s",
            flush=True,
        )
    report["scaling"] = []
    for scale in args.scales:
        print(f"[scaling] {scale:g}x ...", flush=True)
        # Resampled rows repeat (with jitter), which favours memorising families at larger
        # scales; the tuned family is fixed to boosting so each scale measures the same work.
        report["scaling"].append(
            {"scale": scale, **bare_run("smoke", args.source, scale, "boosting")}
        )
    if report["scaling"]:
        report["growth_exponents"] = growth_exponents(report["scaling"])
        plots(report["scaling"], args.out)
    (args.out / "benchmark.md").write_text(markdown(report))
    print(markdown(report))
    save_result("benchmark", report, args.out)


if __name__ == "__main__":
    main()
