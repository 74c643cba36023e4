"""The full default run of two versions of the project, alternated in one session.

Run-time targets ("half of today's time") compare versions on the same machine at the same
time: this script checks the baseline out into a temporary git worktree and alternates
`dagster job execute` of each version (each in a fresh Dagster home and data folder, the same
virtual environment), then reports wall times, the ratio of medians and each run's test metrics,
with a calibration:

    .venv/bin/python -m benchmarks.side_by_side --baseline fcf4815 --pairs 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.calibration import calibrate
from benchmarks.report import add_out_argument, save_result
from benchmarks.run import probe_run
from housing_assets_testkit import REPO_ROOT, default_source, fresh_process_env


def timed_run(repo: Path, job: str, source: str) -> dict:
    """One `dagster job execute` of the code in ``repo`` (put first on the path)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**fresh_process_env(tmp, source), "PYTHONPATH": str(repo)}
        command = [str(Path(sys.executable).parent / "dagster"), "job", "execute"]
        start = time.perf_counter()
        subprocess.run(
            [*command, "-m", "housing_assets.definitions", "-j", job],
            cwd=repo,
            env=env,
            check=True,
            capture_output=True,
        )
        wall = time.perf_counter() - start
        return {"wall_s": round(wall, 1), **probe_run(env, cwd=repo)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="a git ref of this repository")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--job", default="housing_pipeline_job")
    parser.add_argument("--source", default=default_source())
    add_out_argument(parser)
    args = parser.parse_args()

    report: dict = {
        "baseline": args.baseline,
        "job": args.job,
        "calibration": calibrate(),
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        baseline = Path(tmp, "baseline")
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(baseline), args.baseline],
            cwd=REPO_ROOT,
            check=True,
            capture_output=True,
        )
        try:
            for pair in range(args.pairs):
                for version, repo in (("baseline", baseline), ("current", REPO_ROOT)):
                    run = timed_run(repo, args.job, args.source)
                    report["runs"].append({"pair": pair, "version": version, **run})
                    print(f"pair {pair} {version}: {run['wall_s']} s", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], cwd=REPO_ROOT)
    walls = {
        version: [r["wall_s"] for r in report["runs"] if r["version"] == version]
        for version in ("baseline", "current")
    }
    report["median_wall_s"] = {v: statistics.median(w) for v, w in walls.items()}
    report["ratio_of_medians"] = round(
        report["median_wall_s"]["current"] / report["median_wall_s"]["baseline"], 3
    )
    print(json.dumps(report, indent=2, default=float))
    save_result("side_by_side", report, args.out)


if __name__ == "__main__":
    main()
