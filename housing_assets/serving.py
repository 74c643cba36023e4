"""Serve the champion over HTTP and follow it: ``housing-serve [--port 5001] [--alias champion]``.

MLflow's own scoring server (the app ``mlflow models serve`` runs: ``/invocations``, ``/ping``,
``/health``, ``/version``) for the version the alias points to, in this process. Every
``--poll-s`` seconds the alias is looked up again; when a promotion or ``housing-rollback`` has
moved it, the new version is loaded beside the old one and swapped in between requests, so the
server keeps answering throughout. If the new version cannot be loaded, the old one keeps
serving. Each response names the version that computed it (header ``x-model-version``).

The registry is the project's own store (``MLFLOW_TRACKING_URI``, else the embedded sqlite store
in the data folder).
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from typing import Any

from housing_assets import settings
from housing_assets.ml.registry import MODEL_NAME

log = logging.getLogger("housing-serve")


def aliased_version(client: Any, model: str, alias: str) -> str:
    """The version that ``alias`` points to; a ``LookupError`` that says what to do if none."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model, alias).version)
    except MlflowException as exc:
        raise LookupError(
            f"no version of {model!r} has the alias {alias!r} in {client.tracking_uri}: run the "
            "pipeline first (`make run`), or set MLFLOW_TRACKING_URI to the registry that has it"
        ) from exc


class AliasFollowingApp:
    """An ASGI app: MLflow's scoring app for the version ``alias`` points to, replaced by the
    scoring app of the new version when the alias moves (see :meth:`refresh`)."""

    def __init__(self, client: Any, model: str, alias: str):
        self.client, self.model, self.alias = client, model, alias
        version = aliased_version(client, model, alias)
        # (version, scoring app), replaced as one object so a request never mixes the two.
        self._current = (version, self._scoring_app(version))
        self._lock = threading.Lock()  # one refresh at a time
        self._failed: str | None = None  # the last version that could not be loaded

    @property
    def version(self) -> str:
        """The version being served."""
        return self._current[0]

    def _scoring_app(self, version: str):
        import mlflow
        from mlflow.pyfunc import scoring_server

        return scoring_server.init(mlflow.pyfunc.load_model(f"models:/{self.model}/{version}"))

    def refresh(self) -> bool:
        """Serve the version the alias points to now; True if that changed the served version.
        A registry or loading error is logged and the current version keeps serving."""
        with self._lock:
            version = self.version
            try:
                version = aliased_version(self.client, self.model, self.alias)
                if version == self.version:
                    return False
                app = self._scoring_app(version)
            except Exception as exc:
                # Tried again at every poll (the cause may pass); the traceback is logged once.
                message = "could not refresh %s@%s (version %s): %s; still serving version %s"
                details = (self.model, self.alias, version, exc, self.version)
                log.error(message, *details, exc_info=version != self._failed)
                self._failed = version
                return False
            log.info(
                "%s@%s moved to version %s (was %s)", self.model, self.alias, version, self.version
            )
            self._current = (version, app)  # requests already running finish on the old app
            return True

    def follow(self, poll_s: float, stop: threading.Event) -> None:
        """Refresh every ``poll_s`` seconds until ``stop`` is set (run it in a thread)."""
        while not stop.wait(poll_s):
            self.refresh()

    async def __call__(self, scope, receive, send) -> None:
        version, app = self._current
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_with_version(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                message = {**message, "headers": [*headers, (b"x-model-version", version.encode())]}
            await send(message)

        await app(scope, receive, send_with_version)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="housing-serve", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--alias", default="champion", help="registry alias to serve")
    parser.add_argument("--model", default=MODEL_NAME)
    parser.add_argument("--poll-s", type=float, default=30.0, help="how often to check the alias")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import mlflow

    uri = settings.mlflow_tracking_uri()
    mlflow.set_tracking_uri(uri)  # models:/ URIs are resolved against the global registry
    mlflow.set_registry_uri(uri)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        app = AliasFollowingApp(client, args.model, args.alias)
    except LookupError as exc:
        print(f"housing-serve: {exc}", file=sys.stderr)
        return 2
    where = f"http://{args.host}:{args.port}"
    log.info(
        "serving %s@%s (version %s) from %s on %s", args.model, args.alias, app.version, uri, where
    )

    import uvicorn

    stop = threading.Event()
    threading.Thread(target=app.follow, args=(args.poll_s, stop), daemon=True).start()
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
