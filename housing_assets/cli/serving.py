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
from dataclasses import dataclass
from typing import Any

from housing_assets import settings
from housing_assets.io.redaction import redact_url
from housing_assets.io.registry import MODEL_NAME, AliasMissingError, aliased_version
from housing_assets.ml.schema import FEATURE_COLUMNS

log = logging.getLogger("housing-serve")


@dataclass(frozen=True)
class Served:
    """One loaded version: replaced as a whole, so a request never mixes two versions."""

    version: str
    app: Any  # MLflow's scoring app for it
    validates: bool  # its inputs are the housing features: rows get the training data's rules


class AliasFollowingApp:
    """An ASGI app: MLflow's scoring app for the version ``alias`` points to, replaced by the
    scoring app of the new version when the alias moves (see :meth:`refresh`).

    Without ``wait`` the alias must exist at start (:class:`AliasMissingError` otherwise); with
    it, the app starts empty and model endpoints answer 503 until the alias appears.
    """

    def __init__(
        self,
        client: Any,
        model: str,
        alias: str,
        wait: bool = False,
        max_request_bytes: int = 5_000_000,
    ):
        self.client, self.model, self.alias = client, model, alias
        self.max_request_bytes = max_request_bytes
        self._current: Served | None = None
        self._lock = threading.Lock()  # one refresh at a time
        self._failed: str | None = None  # the last version that could not be loaded
        self._problem: str | None = None  # why the last lookup failed (None: it worked)
        self._waiting: str | None = None  # why there is nothing to serve yet
        if wait:
            self.refresh()
        else:
            version = aliased_version(client, model, alias)
            self._current = self._load(version)

    @property
    def version(self) -> str | None:
        """The version being served (None while waiting for the alias)."""
        return self._current.version if self._current else None

    def _load(self, version: str) -> Served:
        import mlflow
        from mlflow.pyfunc import scoring_server

        model = mlflow.pyfunc.load_model(f"models:/{self.model}/{version}")
        schema = model.metadata.get_input_schema()
        inputs = set(schema.input_names()) if schema is not None else set()
        return Served(version, scoring_server.init(model), set(FEATURE_COLUMNS) <= inputs)

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
                served = self._load(version)
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
            self._current = served  # requests already running finish on the old app
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
                await current.app(scope, receive, send)
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
        version, app = current.version, current.app
        if scope["path"] == "/invocations" and scope.get("method") == "POST":
            body = await _read_body(receive, self.max_request_bytes)
            if body is None:
                await _send_json(
                    send, 413, _error(f"request larger than {self.max_request_bytes:,} bytes")
                )
                return
            problem = request_problem(body) if current.validates else None
            if problem:
                await _send_json(send, 400, _error(problem))
                return
            receive = _replay(body)
        await app(scope, receive, _clean_errors(send, version))


def _error(message: str) -> dict[str, str]:
    return {"error_code": "BAD_REQUEST", "message": message}


def request_problem(body: bytes) -> str | None:
    """What is wrong with the rows of an /invocations body, by the training data's own rules
    (a message naming the column and the rule), or None. Bodies that are not JSON records or
    splits are left to MLflow's own parser."""
    import pandas as pd

    from housing_assets.ml.schema import DataValidationError, validate_features

    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    try:
        if isinstance(payload.get("dataframe_records"), list):
            frame = pd.DataFrame.from_records(payload["dataframe_records"])
        elif isinstance(payload.get("dataframe_split"), dict):
            split = payload["dataframe_split"]
            frame = pd.DataFrame(split.get("data", []), columns=split.get("columns"))
        else:
            return None
    except (TypeError, ValueError) as exc:
        return f"request: rows could not be read as a table ({type(exc).__name__})"
    try:
        validate_features(frame)
    except DataValidationError as exc:
        return str(exc)
    return None


async def _read_body(receive, limit: int) -> bytes | None:
    """The whole request body, or None if it exceeds ``limit`` bytes. An oversize body is read
    to its end but not kept (memory stays bounded): answering while the client is still
    sending would reset its connection before it sees the 413."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        else:
            chunks.clear()
        if not message.get("more_body", False):
            break
    return b"".join(chunks) if size <= limit else None


def _replay(body: bytes):
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _clean_errors(send, version: str):
    """``send`` that adds x-model-version to every response and drops MLflow's stack traces
    (server paths and code) from error bodies."""
    pending: dict[str, Any] = {}

    async def wrapped(message) -> None:
        if message["type"] == "http.response.start":
            headers = [*message.get("headers", []), (b"x-model-version", version.encode())]
            message = {**message, "headers": headers}
            if message["status"] >= 400:
                pending["start"], pending["body"] = message, b""
                return
        elif message["type"] == "http.response.body" and "start" in pending:
            pending["body"] += message.get("body", b"")
            if message.get("more_body", False):
                return
            body = pending["body"]
            try:
                parsed = json.loads(body)
                if isinstance(parsed, dict):
                    parsed.pop("stack_trace", None)
                    body = json.dumps(parsed).encode()
            except ValueError:
                pass
            start = pending.pop("start")
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await send(message)

    return wrapped


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
        "--max-request-bytes",
        type=int,
        default=5_000_000,
        help="larger /invocations bodies get 413 (default 5 MB, ~20,000 rows)",
    )
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
        app = AliasFollowingApp(
            client, args.model, args.alias, wait=args.wait, max_request_bytes=args.max_request_bytes
        )
    except AliasMissingError as exc:
        print(f"housing-serve: {exc}", file=sys.stderr)
        return 2
    where = f"http://{args.host}:{args.port}"
    served = f"version {app.version}" if app.version else "nothing yet: waiting for the alias"
    log.info(
        "serving %s@%s (%s) from %s on %s", args.model, args.alias, served, redact_url(uri), where
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
