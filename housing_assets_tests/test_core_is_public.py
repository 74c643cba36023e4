"""The product's core uses public Dagster API only and changes nothing process-wide on import.

Dagster internals are used only by the opt-in platform code under ``housing_assets/platform/``
(the warm code server, the run-liveness plumbing the instance config names); the code
location never imports it. Each check runs in a fresh interpreter, where nothing an earlier
test imported or configured can hide a side effect.
"""

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import housing_assets

PACKAGE = Path(housing_assets.__file__).parent
PLATFORM = PACKAGE / "platform"


def _core_sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if PLATFORM not in p.parents)


def _imported_modules(tree: ast.AST) -> list[str]:
    """Every module an import statement names: ``from dagster import _check`` names
    ``dagster._check``; relative imports are resolved to nothing (the package has none)."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.append(node.args[0].value)
    return names


def _is_private_dagster(module: str) -> bool:
    parts = module.split(".")
    return parts[0].startswith("dagster") and any(p.startswith("_") for p in parts[1:])


def test_the_scan_sees_private_imports_in_every_form():
    source = textwrap.dedent(
        """
        import dagster._core.launcher
        from dagster._grpc.server import DagsterApiServer
        from dagster import _check
        from dagster_shared._x import y
        importlib.import_module("dagster._cli.api")
        from dagster import Definitions, in_process_executor
        """
    )
    private = {m for m in _imported_modules(ast.parse(source)) if _is_private_dagster(m)}
    assert private == {
        "dagster._core.launcher",
        "dagster._grpc.server",
        "dagster._grpc.server.DagsterApiServer",
        "dagster._check",
        "dagster_shared._x",
        "dagster_shared._x.y",
        "dagster._cli.api",
    }


def test_no_module_outside_platform_imports_dagster_internals_or_the_platform():
    sources = _core_sources()
    assert PACKAGE / "definitions.py" in sources and len(sources) > 20
    offenders = {}
    for path in sources:
        modules = _imported_modules(ast.parse(path.read_text(), filename=str(path)))
        bad = [
            m for m in modules if _is_private_dagster(m) or m.startswith("housing_assets.platform")
        ]
        if bad:
            offenders[str(path.relative_to(PACKAGE.parent))] = bad
    assert offenders == {}


_IMPORT_THE_CODE_LOCATION = """
import atexit, gc, json, sys
import matplotlib

registered = []
register = atexit.register
atexit.register = lambda fn, *a, **k: registered.append(repr(fn)) or register(fn, *a, **k)
backend = dict.__getitem__(matplotlib.rcParams, "backend")

import housing_assets.definitions  # noqa: E402

print(json.dumps({
    "defs": type(housing_assets.definitions.defs).__name__,
    "exit_handlers": registered,
    "gc_enabled": gc.isenabled(),
    "gc_frozen": gc.get_freeze_count(),
    "backend_unchanged": dict.__getitem__(matplotlib.rcParams, "backend") == backend,
    "pyplot": "matplotlib.pyplot" in sys.modules,
    "loaded": sorted(m for m in sys.modules if m.startswith("housing_assets")),
}))
"""


def test_importing_the_code_location_changes_nothing_process_wide():
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_THE_CODE_LOCATION],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["defs"] == "Definitions"
    assert not [h for h in seen["exit_handlers"] if "freeze" in h], seen["exit_handlers"]
    assert seen["gc_enabled"] and seen["gc_frozen"] == 0
    assert seen["backend_unchanged"] and not seen["pyplot"]
    assert "housing_assets.definitions" in seen["loaded"]
    assert not [m for m in seen["loaded"] if m.startswith("housing_assets.platform")]


_RENDER_EVERY_CHART = """
import io, json, sys
import matplotlib
import numpy as np
import pandas as pd
from PIL import Image

backend = dict.__getitem__(matplotlib.rcParams, "backend")
from housing_assets.reports import plots  # noqa: E402

rng = np.random.default_rng(0)
k = pd.DataFrame({"k": [2, 5, 10], "cv_mape": [14.0, 13.2, 13.5], "cv_mape_se": [0.2] * 3,
                  "chosen": [False, True, False], "inertia": [9.0, 4.0, 2.0],
                  "silhouette_sampled": [0.7, 0.5, 0.4]})
trials = pd.DataFrame({"number": [0, 1, 2], "value": [14.0, 13.0, np.nan],
                       "state": ["COMPLETE", "COMPLETE", "PRUNED"],
                       "metrics": [{}, {}, {"mape": 15.0}]})
geo = pd.DataFrame({"longitude": rng.uniform(-124, -114, 200),
                    "latitude": rng.uniform(32, 42, 200), "geo_cluster": rng.integers(0, 5, 200)})
actual = rng.uniform(1e5, 5e5, 100)
figures = {
    "bar": plots.bar_chart(["a", "b"], [1.0, 2.0], "t", "x", highlight="b"),
    "k_evidence": plots.k_evidence_chart(k, "mape"),
    "k_evidence_pinned": plots.k_evidence_chart(k.drop(columns=["cv_mape", "cv_mape_se"]), "mape"),
    "cluster_map": plots.cluster_map(geo),
    "history": plots.optimisation_history(trials, "mape"),
    "predicted_vs_actual": plots.predicted_vs_actual(actual, actual * 1.1),
}
sizes = {}
for name, fig in figures.items():
    png = plots.to_png(fig)
    assert png.startswith(b"\\x89PNG\\r\\n\\x1a\\n"), name
    image = Image.open(io.BytesIO(png))
    image.load()
    colours = image.convert("L").getextrema()
    sizes[name] = [image.width, image.height, colours[1] - colours[0]]
from housing_assets.reports.evidence import Evidence
from housing_assets.resources.tracking import dagster_metadata
png = plots.to_png(plots.bar_chart(["a"], [1.0], "t", "x"))
markdown = dagster_metadata(Evidence(kind="probe", figures={"alt": png}))["alt"].value
print(json.dumps({
    "sizes": sizes,
    "markdown": markdown[:32],
    "backend_unchanged": dict.__getitem__(matplotlib.rcParams, "backend") == backend,
    "pyplot": "matplotlib.pyplot" in sys.modules,
}))
"""


def test_the_charts_render_as_png_without_selecting_a_backend():
    done = subprocess.run(
        [sys.executable, "-c", _RENDER_EVERY_CHART], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    for name, (width, height, contrast) in seen["sizes"].items():
        assert width > 200 and height > 100 and contrast > 100, (name, width, height, contrast)
    assert seen["markdown"].startswith("![alt](data:image/png;base64,")
    assert seen["backend_unchanged"] and not seen["pyplot"]
