"""Serve the champion over HTTP and follow it: ``housing-serve [--port 5001] [--alias champion]``.

MLflow's own scoring server (the app ``mlflow models serve`` runs: ``/invocations``, ``/ping``,
``/health``, ``/version``) for the version the alias points to, in this process. Every
``--poll-s`` seconds the alias is looked up again; when a promotion or ``housing-rollback`` has
moved it, the new version is loaded beside the old one and swapped in between requests, so the
server keeps answering throughout. If the new version cannot be loaded, the old one keeps
serving. Each response names the version that computed it (header ``x-model-version``).

``/status`` answers for the server itself (JSON: model, alias, served version, state): 200 while
the registry answers, 503 when its last lookup failed. With ``--wait`` (deployments) the server
also starts before the alias exists: until the first pipeline run registers a champion, model
endpoints answer 503 saying so, and the first champion is picked up at the next poll.

The registry is the project's own store (``MLFLOW_TRACKING_URI``, else the embedded sqlite store
in the data folder).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from typing import Any

from housing_assets import settings
from housing_assets.ml.registry import MODEL_NAME

log = logging.getLogger("housing-serve")

# MLflow error codes meaning "there is no such model or alias" (anything else is the registry
# failing, which must not be mistaken for a missing champion).
_NOT_THERE = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}


class AliasMissingError(LookupError):
    """The model or its alias does not exist (yet)."""


def aliased_version(client: Any, model: str, alias: str) -> str:
    """The version that ``alias`` points to; :class:`AliasMissingError` saying what to do if none.
    Other registry failures (unreachable server, ...) propagate as they are."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model, alias).version)
    except MlflowException as exc:
        if exc.error_code not in _NOT_THERE:
            raise
        raise AliasMissingError(
            f"no version of {model!r} has the alias {alias!r} in {client.tracking_uri}: run the "
            "pipeline first (`make run`), or set MLFLOW_TRACKING_URI to the registry that has it"
        ) from exc


class AliasFollowingApp:
    """An ASGI app: MLflow's scoring app for the version ``alias`` points to, replaced by the
    scoring app of the new version when the alias moves (see :meth:`refresh`).

    Without ``wait`` the alias must exist at start (:class:`AliasMissingError` otherwise); with
    it, the app starts empty and model endpoints answer 503 until the alias appears.
    """

    def __init__(self, client: Any, model: str, alias: str, wait: bool = False):
        self.client, self.model, self.alias = client, model, alias
        # (version, scoring app), replaced as one object so a request never mixes the two.
        self._current: tuple[str, Any] | None = None
        self._lock = threading.Lock()  # one refresh at a time
        self._failed: str | None = None  # the last version that could not be loaded
        self._problem: str | None = None  # why the last lookup failed (None: it worked)
        self._waiting: str | None = None  # why there is nothing to serve yet
        if wait:
            self.refresh()
        else:
            version = aliased_version(client, model, alias)
            self._current = (version, self._scoring_app(version))

    @property
    def version(self) -> str | None:
        """The version being served (None while waiting for the alias)."""
        return self._current[0] if self._current else None

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
                self._problem = None
                if version == self.version:
                    return False
                app = self._scoring_app(version)
            except AliasMissingError as exc:
                self._problem = None
                if self._current is None:
                    if self._waiting is None:
                        log.warning("waiting: %s", exc)
                    self._waiting = str(exc)
                else:
                    log.error("%s; still serving version %s", exc, self.version)
                return False
            except Exception as exc:
                # Tried again at every poll (the cause may pass); the traceback is logged once.
                self._problem = f"{type(exc).__name__}: {exc}"
                message = "could not refresh %s@%s (version %s): %s; still serving version %s"
                details = (self.model, self.alias, version, exc, self.version)
                log.error(message, *details, exc_info=version != self._failed)
                self._failed = version
                return False
            log.info(
                "%s@%s moved to version %s (was %s)", self.model, self.alias, version, self.version
            )
            self._current = (version, app)  # requests already running finish on the old app
            self._waiting = None
            return True

    def follow(self, poll_s: float, stop: threading.Event) -> None:
        """Refresh every ``poll_s`` seconds until ``stop`` is set (run it in a thread)."""
        while not stop.wait(poll_s):
            self.refresh()

    def status(self) -> tuple[int, dict[str, Any]]:
        """The server's own state: 503 only when the registry's last answer was an error."""
        state = "serving" if self._current else "waiting for the alias"
        body = {"model": self.model, "alias": self.alias, "version": self.version, "state": state}
        if self._waiting and not self._current:
            body["reason"] = self._waiting
        if self._problem:
            body["registry_error"] = self._problem
        return (503 if self._problem else 200), body

    async def __call__(self, scope, receive, send) -> None:
        current = self._current
        if scope["type"] != "http":
            if current is not None:
                await current[1](scope, receive, send)
            return
        if scope["path"] == "/status":
            await _send_json(send, *self.status())
            return
        if current is None:
            await _send_json(
                send,
                503,
                {
                    "error_code": "NO_MODEL_VERSION",
                    "message": self._waiting or f"{self.model}@{self.alias} is not loaded yet",
                },
            )
            return
        version, app = current

        async def send_with_version(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                message = {**message, "headers": [*headers, (b"x-model-version", version.encode())]}
            await send(message)

        await app(scope, receive, send_with_version)


async def _send_json(send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="housing-serve", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--alias", default="champion", help="registry alias to serve")
    parser.add_argument("--model", default=MODEL_NAME)
    parser.add_argument("--poll-s", type=float, default=30.0, help="how often to check the alias")
    parser.add_argument(
        "--wait",
        action="store_true",
        help="start even if the alias does not exist yet (503 until it does), as a deployment "
        "does before its first pipeline run",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import mlflow

    uri = settings.mlflow_tracking_uri()
    mlflow.set_tracking_uri(uri)  # models:/ URIs are resolved against the global registry
    mlflow.set_registry_uri(uri)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        app = AliasFollowingApp(client, args.model, args.alias, wait=args.wait)
    except AliasMissingError as exc:
        print(f"housing-serve: {exc}", file=sys.stderr)
        return 2
    where = f"http://{args.host}:{args.port}"
    served = f"version {app.version}" if app.version else "nothing yet: waiting for the alias"
    log.info("serving %s@%s (%s) from %s on %s", args.model, args.alias, served, uri, where)

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
