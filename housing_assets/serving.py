"""Serve the champion over HTTP: ``housing-serve [--port 5001] [--alias champion]``.

A thin front for ``mlflow models serve`` that reads the project's own tracking store (the
embedded sqlite store in the data folder unless ``MLFLOW_TRACKING_URI`` says otherwise) and puts
this environment's ``bin`` folder on PATH, because MLflow starts ``uvicorn`` from PATH.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from housing_assets import settings
from housing_assets.ml.registry import MODEL_NAME


def serve_command(model_uri: str, host: str, port: int, workers: int = 1) -> list[str]:
    """The ``mlflow models serve`` command line for ``model_uri`` in this environment."""
    return [
        str(Path(sys.executable).parent / "mlflow"),
        "models",
        "serve",
        "-m",
        model_uri,
        "-h",
        host,
        "-p",
        str(port),
        "-w",
        str(workers),
        "--env-manager",
        "local",  # the model's dependencies are this project's: no new virtualenv per start
    ]


def serve_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with the tracking store and PATH set."""
    env = dict(os.environ if base is None else base)
    env.setdefault("MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri())
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def aliased_version(tracking_uri: str, model: str, alias: str) -> str:
    """The version that ``alias`` points to; a ``LookupError`` that says what to do if none."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        return str(client.get_model_version_by_alias(model, alias).version)
    except MlflowException as exc:
        raise LookupError(
            f"no version of {model!r} has the alias {alias!r} in {tracking_uri}: run the "
            "pipeline first (`make run`), or set MLFLOW_TRACKING_URI to the registry that has it"
        ) from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="housing-serve", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--alias", default="champion", help="registry alias to serve")
    parser.add_argument("--model", default=MODEL_NAME)
    args = parser.parse_args(argv)
    env = serve_environment()
    try:
        version = aliased_version(env["MLFLOW_TRACKING_URI"], args.model, args.alias)
    except LookupError as exc:
        print(f"housing-serve: {exc}", file=sys.stderr)
        return 2
    print(
        f"serving models:/{args.model}@{args.alias} (version {version}) from "
        f"{env['MLFLOW_TRACKING_URI']} on http://{args.host}:{args.port}",
        flush=True,
    )
    uri = f"models:/{args.model}@{args.alias}"
    command = serve_command(uri, args.host, args.port, args.workers)
    os.execve(command[0], command, env)
    return 0  # not reached: execve replaces this process


if __name__ == "__main__":
    sys.exit(main())
