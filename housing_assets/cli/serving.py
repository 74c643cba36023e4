"""Serve the champion over HTTP and follow it: ``housing-serve [--port 5001] [--alias champion]``.

MLflow's own scoring server (the app ``mlflow models serve`` runs: ``/invocations``, ``/ping``,
``/health``, ``/version``) for the version the alias points to, in this process. Every
``--poll-s`` seconds the alias is looked up again; when a promotion or ``housing-rollback`` has
moved it, the new version is loaded beside the old one and swapped in between requests, so the
server keeps answering throughout. If the new version cannot be loaded, the old one keeps
serving. Each response names the version that computed it (header ``x-model-version``).

A version is loaded only from files fetched into a private folder and found to match the digest
recorded on the version (tag ``model_sha256``, see :mod:`housing_assets.io.integrity`), before
anything in them is unpickled. At start a mismatch (or a version without the tag, unless
``--allow-missing-digest``) stops the server; later, the version already served stays.

Requests are read here, not by MLflow: JSON bodies in any of MLflow's four formats and CSV get
the training data's row rules, and MLflow's app is handed the rows as checked (one canonical
``dataframe_split`` body). Malformed bodies get 400 and one log line; Parquet and other
content types 415.

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
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from housing_assets import settings
from housing_assets.io.integrity import (
    DIGEST_TAG,
    MissingDigestError,
    ModelIntegrityError,
    verify_model_version,
)
from housing_assets.io.redaction import redact_url
from housing_assets.io.registry import MODEL_NAME, AliasMissingError, aliased_version
from housing_assets.ml.schema import FEATURE_COLUMNS

log = logging.getLogger("housing-serve")


@dataclass(frozen=True)
class Served:
    """One loaded version: replaced as a whole, so a request never mixes two versions."""

    version: str
    app: Any  # MLflow's scoring app for it
    rules: RequestRules  # what its requests must be
    model: Any = None  # the loaded pyfunc model (for shadow scoring)


class AliasFollowingApp:
    """An ASGI app: MLflow's scoring app for the version ``alias`` points to, replaced by the
    scoring app of the new version when the alias moves (see :meth:`refresh`).

    Without ``wait`` the alias must exist at start (:class:`AliasMissingError` otherwise); with
    it, the app starts empty and model endpoints answer 503 until the alias appears. A version is
    loaded only from files that match the digest recorded on it (:mod:`housing_assets.io.integrity`);
    one without a digest only with ``allow_missing_digest``.
    """

    def __init__(
        self,
        client: Any,
        model: str,
        alias: str,
        wait: bool = False,
        max_request_bytes: int = 5_000_000,
        max_rows: int = 50_000,
        allow_missing_digest: bool = False,
        models_dir: str | Path | None = None,
    ):
        self.client, self.model, self.alias = client, model, alias
        self.max_request_bytes, self.max_rows = max_request_bytes, max_rows
        self.allow_missing_digest = allow_missing_digest
        # Verified model folders are fetched here and loaded from here (never from the store).
        self.models_dir = Path(models_dir or tempfile.mkdtemp(prefix="housing-serve-"))
        self._current: Served | None = None
        self._lock = threading.Lock()  # one refresh at a time
        self._failed: str | None = None  # the last version that could not be loaded
        self._problem: str | None = None  # why the last lookup failed (None: it worked)
        self._waiting: str | None = None  # why there is nothing to serve yet
        # The last version refused for its files and the digest tag it had then: not fetched
        # again until the alias moves or that tag changes.
        self._refused: tuple[str, str | None] | None = None
        self._refusal: str | None = None
        # Called with each checked request body and the version answering it (shadow scoring).
        self.on_request: Callable[[bytes, Served], None] | None = None
        if wait:
            self.refresh()
        else:
            version = aliased_version(client, model, alias)
            self._current = self._load(version)

    @property
    def version(self) -> str | None:
        """The version being served (None while waiting for the alias)."""
        return self._current.version if self._current else None

    def loaded(self) -> tuple[str, Any] | None:
        """(version, pyfunc model) being served, None while waiting for the alias."""
        current = self._current
        return (current.version, current.model) if current else None

    def _load(self, version: str) -> Served:
        """Fetch the version's files, check them against its recorded digest, and only then
        load (unpickle) the model, from the checked folder."""
        import mlflow
        from mlflow.pyfunc import scoring_server

        folder = Path(tempfile.mkdtemp(prefix=f"v{version}-", dir=self.models_dir))
        try:
            local = verify_model_version(
                self.client, self.model, version, folder, allow_missing=self.allow_missing_digest
            )
            model = mlflow.pyfunc.load_model(str(local))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        schema = model.metadata.get_input_schema()
        columns = (
            tuple(schema.input_names()) if schema is not None and schema.has_input_names() else ()
        )
        rules = RequestRules(
            columns=columns,
            validates=set(FEATURE_COLUMNS) <= set(columns),
            accepts_params=model.metadata.get_params_schema() is not None,
            max_rows=self.max_rows,
        )
        return Served(version, scoring_server.init(model), rules, model)

    def _digest_tag(self, version: str) -> str | None:
        return (self.client.get_model_version(self.model, version).tags or {}).get(DIGEST_TAG)

    def refresh(self) -> bool:
        """Serve the version the alias points to now; True if that changed the served version.
        A registry or loading error, or files that fail their check, are logged and the current
        version keeps serving."""
        with self._lock:
            version = self.version
            try:
                version = aliased_version(self.client, self.model, self.alias)
                self._problem = None
                if version == self.version:
                    self._refused = self._refusal = None
                    return False
                if self._refused and self._refused == (version, self._digest_tag(version)):
                    return False  # refused already, and nothing about it has changed
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
            except ModelIntegrityError as exc:
                # A refusal, not a failure: logged once, without a traceback, and not retried
                # until the version's digest tag changes (or the alias moves).
                self._refused = (version, self._digest_tag(version))
                self._refusal = f"refused version {version}: {exc}"
                if self._current is None:
                    self._waiting = self._refusal
                keeps = (
                    f"still serving version {self.version}" if self._current else "nothing served"
                )
                log.error("%s@%s: %s; %s", self.model, self.alias, self._refusal, keeps)
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
            self._waiting = self._refused = self._refusal = None
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
        if self._refusal:
            body["refused"] = self._refusal
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
        if scope.get("method") == "POST":
            if scope["path"] != "/invocations":  # nothing else takes a body
                await _send_json(send, 404, {"error_code": "NOT_FOUND", "message": "not found"})
                return
            body = await _read_body(receive, self.max_request_bytes)
            try:
                if body is None:
                    raise RequestError(413, f"request larger than {self.max_request_bytes:,} bytes")
                body = canonical_request(body, _header(scope, b"content-type"), current.rules)
            except RequestError as exc:
                _log_refusal(scope, exc.status, str(exc))
                await _send_json(send, exc.status, _error(str(exc)))
                return
            except Exception as exc:  # a reader's bug must not become MLflow's 500 page
                _log_refusal(scope, 400, f"request could not be read ({type(exc).__name__})")
                await _send_json(send, 400, _error("request could not be read as a table"))
                return
            headers = [
                (k, v)
                for k, v in scope.get("headers", [])
                if k.lower() not in (b"content-type", b"content-length", b"content-encoding")
            ]
            headers += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
            scope = {**scope, "headers": headers}
            receive = _replay(body)
            if self.on_request is not None:
                self.on_request(body, current)
        await _guarded(app, scope, receive, _clean_errors(send, version))


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _log_refusal(scope, status: int, message: str) -> None:
    client = scope.get("client") or ("?", 0)
    log.warning("refused a request from %s: %d %s", client[0], status, message)


async def _guarded(app, scope, receive, send) -> None:
    """MLflow's app, with an exception it lets out answered as a plain 500 (no traceback or
    path in the response; one line in the log)."""
    started = False

    async def tracking_send(message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = True
        await send(message)

    try:
        await app(scope, receive, tracking_send)
    except Exception as exc:
        log.error("error answering %s: %s", scope.get("path"), type(exc).__name__)
        if not started:
            await _send_json(
                send, 500, {"error_code": "INTERNAL_ERROR", "message": "internal error"}
            )


def _error(message: str) -> dict[str, str]:
    return {"error_code": "BAD_REQUEST", "message": message}


class RequestError(ValueError):
    """An /invocations request refused before the model sees it: ``status`` and a message that
    names the problem (never the request's content beyond a column name and a row number)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RequestRules:
    """What an /invocations request must be for one served version."""

    columns: tuple[str, ...] = ()  # the signature's input columns (empty: none named)
    validates: bool = False  # the housing features: rows get the training data's rules
    accepts_params: bool = False  # the signature declares params
    max_rows: int = 50_000


ACCEPTED = (
    "send application/json (one of dataframe_records, dataframe_split, instances or inputs) or "
    "text/csv"
)
FORMATS = ("dataframe_records", "dataframe_split", "instances", "inputs")
_MAX_DIGITS = 20  # longer JSON integers are refused (no feature needs more)


def canonical_request(body: bytes, content_type: str | None, rules: RequestRules) -> bytes:
    """The one request body MLflow's scoring app is given: ``{"dataframe_split": ...}`` JSON of
    the rows exactly as they were checked. Every format MLflow accepts is read here by the same
    strict rules (JSON records, split, instances and inputs; CSV), so no format bypasses the row
    checks and MLflow never parses what was not checked. Parquet is refused (415): a binary
    table is not read from untrusted clients. :class:`RequestError` says what is wrong."""
    media = _media_type(content_type)
    if media not in ("application/json", "text/csv"):
        raise RequestError(415, f"content type {media[:60]!r} is not accepted: {ACCEPTED}")
    text = _text(body)
    params = None
    if media == "application/json":
        columns, rows, params = _json_table(text)
        if params is not None and not rules.accepts_params:
            raise RequestError(400, "params: this model takes no parameters")
    else:
        columns, rows = _csv_table(text)
    if len(rows) > rules.max_rows:
        raise RequestError(413, f"request has more than {rules.max_rows:,} rows")
    if rules.validates:
        columns, rows = _checked_features(columns, rows, rules.columns)
    payload: dict[str, Any] = {"dataframe_split": {"columns": columns, "data": rows}}
    if params is not None:
        payload["params"] = params
    try:
        return json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()
    except ValueError as exc:  # a non-finite number read from text
        raise RequestError(400, f"request: {exc}") from exc


def request_problem(body: bytes, content_type: str | None = "application/json") -> str | None:
    """What is wrong with an /invocations request for the housing model (a message naming the
    column and the rule), or None."""
    from housing_assets.ml.schema import FEATURE_COLUMNS

    try:
        canonical_request(body, content_type, RequestRules(tuple(FEATURE_COLUMNS), True))
    except RequestError as exc:
        return str(exc)
    return None


def _media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header; only a UTF-8 charset is accepted."""
    if not content_type or not content_type.strip():
        raise RequestError(400, f"request has no Content-Type header: {ACCEPTED}")
    media, *parameters = (part.strip() for part in content_type.split(";"))
    charset = "utf-8"
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() != "charset":
            raise RequestError(415, f"unsupported Content-Type parameter {name.strip()[:40]!r}")
        charset = value.strip().strip('"').lower()
    if charset not in ("utf-8", "utf8"):
        raise RequestError(415, "only the UTF-8 charset is accepted")
    return media.lower()


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(400, f"request body is not valid UTF-8 (byte {exc.start})") from exc


def _json_table(text: str) -> tuple[list[str], list[list], Any]:
    """(columns, rows, params) of a JSON body in one of MLflow's four formats."""
    try:
        payload = json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_constant=_no_constant,
            parse_int=_int,
            parse_float=_float,
        )
    except RecursionError:
        raise RequestError(400, "request: JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        message = (
            f"request body is not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})"
        )
        raise RequestError(400, message) from None
    if not isinstance(payload, dict):
        raise RequestError(400, f"request body must be a JSON object: {ACCEPTED}")
    formats = [key for key in payload if key in FORMATS]
    unexpected = [key for key in payload if key not in FORMATS and key != "params"]
    if len(formats) != 1 or unexpected:
        found = ", ".join(repr(k[:40]) for k in payload) or "no keys"
        raise RequestError(
            400,
            f"request: found {found}; expected exactly one of {', '.join(FORMATS)} (and "
            "optionally params)",
        )
    key = formats[0]
    data = payload[key]
    if key == "dataframe_split":
        columns, rows = _split(data)
    elif isinstance(data, list) and all(isinstance(row, dict) for row in data):
        columns, rows = _records(data)
    elif key in ("instances", "inputs") and isinstance(data, dict):
        columns, rows = _columnar(key, data)
    elif key == "dataframe_records":
        raise RequestError(400, "dataframe_records must be a list of objects, one per row")
    else:
        raise RequestError(
            400,
            f"{key} must be a list of objects (one per row) or an object of equal-length "
            "lists (one per column)",
        )
    _check_cells(rows)
    return columns, rows, payload.get("params")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):  # JSON allows it; which value counts would be a guess
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise RequestError(400, f"request: duplicate key {key[:40]!r} in a JSON object")
            seen.add(key)
    return result


def _no_constant(name: str) -> float:
    raise RequestError(400, f"request: {name} is not a JSON number (use null for a missing value)")


def _int(digits: str) -> int:
    if len(digits.lstrip("-")) > _MAX_DIGITS:
        raise RequestError(400, f"request: an integer has more than {_MAX_DIGITS} digits")
    return int(digits)


def _float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise RequestError(400, "request: a number is too large to be represented")
    return value


def _records(data: list[dict]) -> tuple[list[str], list[list]]:
    columns = list(dict.fromkeys(name for row in data for name in row))
    return columns, [[row.get(name) for name in columns] for row in data]


def _split(data: Any) -> tuple[list[str], list[list]]:
    if not isinstance(data, dict) or not isinstance(data.get("columns"), list):
        raise RequestError(400, "dataframe_split must be an object with columns and data")
    unexpected = set(data) - {"columns", "data", "index"}
    if unexpected:
        raise RequestError(400, "dataframe_split has keys other than columns, data and index")
    columns, rows = data["columns"], data.get("data", [])
    if not all(isinstance(name, str) for name in columns):
        raise RequestError(400, "dataframe_split: column names must be strings")
    if len(set(columns)) != len(columns):
        duplicate = next(name for i, name in enumerate(columns) if name in columns[:i])
        raise RequestError(400, f"dataframe_split: duplicate column {duplicate[:40]!r}")
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise RequestError(400, "dataframe_split: data must be a list of rows (lists)")
    for number, row in enumerate(rows, 1):
        if len(row) != len(columns):
            raise RequestError(
                400,
                f"dataframe_split: data row {number} has {len(row)} values for "
                f"{len(columns)} columns",
            )
    return columns, rows


def _columnar(key: str, data: dict) -> tuple[list[str], list[list]]:
    columns = list(data)
    if not all(isinstance(values, list) for values in data.values()):
        raise RequestError(400, f"{key}: each column must be a list of values, one per row")
    lengths = {len(values) for values in data.values()}
    if len(lengths) > 1:
        raise RequestError(400, f"{key}: columns have different numbers of values")
    return columns, [list(row) for row in zip(*data.values(), strict=True)]


_SCALARS = (str, int, float, type(None))


def _check_cells(rows: list[list]) -> None:
    for number, row in enumerate(rows, 1):
        for value in row:
            if not isinstance(value, _SCALARS):
                raise RequestError(
                    400,
                    f"request: values must be numbers, text or null (row {number} has "
                    f"a {type(value).__name__})",
                )


def _csv_table(text: str) -> tuple[list[str], list[list]]:
    import csv
    import io

    try:
        lines = [line for line in csv.reader(io.StringIO(text, newline=""), strict=True) if line]
    except csv.Error as exc:
        raise RequestError(400, f"request body is not valid CSV: {exc}") from None
    if not lines:
        raise RequestError(400, "CSV request has no header row")
    columns, rows = lines[0], lines[1:]
    if len(set(columns)) != len(columns):
        duplicate = next(name for i, name in enumerate(columns) if name in columns[:i])
        raise RequestError(400, f"CSV request: duplicate column {duplicate[:40]!r}")
    for number, row in enumerate(rows, 1):
        if len(row) != len(columns):
            raise RequestError(
                400,
                f"CSV request: data row {number} has {len(row)} values for {len(columns)} columns",
            )
    return columns, [[value if value != "" else None for value in row] for row in rows]


def _checked_features(
    columns: list[str], rows: list[list], schema_columns: tuple[str, ...]
) -> tuple[list[str], list[list]]:
    """The training data's rules on the rows (types, completeness, ranges: the messages of
    :func:`validate_features`), then the signature's columns with the numbers as checked."""
    import pandas as pd

    from housing_assets.ml.schema import (
        CATEGORICAL_FEATURE,
        NUMERIC_FEATURES,
        DataValidationError,
        validate_features,
    )

    position = {name: i for i, name in enumerate(columns)}
    for name in NUMERIC_FEATURES:  # JSON true/false are not numbers (pandas would say 1/0)
        if name in position:
            i = position[name]
            bad = [n for n, row in enumerate(rows, 1) if isinstance(row[i], bool)]
            if bad:
                raise RequestError(
                    400,
                    f"request: column '{name}' must be numeric; {len(bad)} value(s) are "
                    f"not (first at data row {bad[0]})",
                )
    frame = pd.DataFrame(rows, columns=columns)
    try:
        validate_features(frame)
    except DataValidationError as exc:
        raise RequestError(400, str(exc)) from None
    i = position[CATEGORICAL_FEATURE]
    bad = [n for n, row in enumerate(rows, 1) if not isinstance(row[i], str)]
    if bad:
        raise RequestError(
            400,
            f"request: column '{CATEGORICAL_FEATURE}' must be text; {len(bad)} value(s) "
            f"are not (first at data row {bad[0]})",
        )
    values = {}
    for name in [c for c in schema_columns if c in position]:
        if name in NUMERIC_FEATURES:
            column = [row[position[name]] for row in rows]
            if all(v is None or type(v) in (int, float) for v in column):  # JSON numbers
                values[name] = [None if v is None else float(v) for v in column]
            else:  # text (CSV, or numbers sent as strings): as the checks read it
                numbers = pd.to_numeric(frame[name], errors="coerce").astype("float64")
                values[name] = [None if v != v else v for v in numbers.tolist()]
        else:
            values[name] = frame[name].tolist()
    names = list(values)
    return names, [list(row) for row in zip(*values.values(), strict=True)] if names else []


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


ALLOW_MISSING_DIGEST_ENV = "HOUSING_SERVE_ALLOW_MISSING_DIGEST"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="housing-serve",
        description=__doc__.splitlines()[0],
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
        "--max-rows",
        type=int,
        default=50_000,
        help="requests with more rows get 413 (default 50,000)",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="start even if the alias does not exist yet (503 until it does), as a deployment "
        "does before its first pipeline run",
    )
    parser.add_argument(
        "--allow-missing-digest",
        action="store_true",
        default=settings.load().serve_allow_missing_digest,
        help=f"load a version that has no {DIGEST_TAG!r} tag (registered before digests were "
        "recorded) without checking its files, with a warning; versions that have the tag are "
        f"always checked. Also {ALLOW_MISSING_DIGEST_ENV}=1. Default: refuse such a version",
    )
    parser.add_argument(
        "--shadow",
        metavar="ALIAS",
        help="also score every request with the version this alias names (e.g. challenger), "
        "off the request path, and log both answers (see --request-log)",
    )
    parser.add_argument(
        "--request-log",
        default=str(settings.data_dir() / "request_log"),
        help="folder of the shadow request log (Parquet parts; default: the data folder's "
        "request_log)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in the log

    import mlflow

    uri = settings.mlflow_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    models_dir = tempfile.mkdtemp(prefix="housing-serve-")
    try:
        try:
            app = AliasFollowingApp(
                client,
                args.model,
                args.alias,
                wait=args.wait,
                max_request_bytes=args.max_request_bytes,
                max_rows=args.max_rows,
                allow_missing_digest=args.allow_missing_digest,
                models_dir=models_dir,
            )
        except AliasMissingError as exc:
            print(f"housing-serve: {exc}", file=sys.stderr)
            return 2
        except ModelIntegrityError as exc:
            hint = (
                f" (or, for a version registered before digests existed, start with "
                f"--allow-missing-digest or {ALLOW_MISSING_DIGEST_ENV}=1 to serve it unchecked)"
                if isinstance(exc, MissingDigestError)
                else ""
            )
            print(f"housing-serve: refused to start: {exc}{hint}", file=sys.stderr)
            return 3
        where = f"http://{args.host}:{args.port}"
        served = f"version {app.version}" if app.version else "nothing yet: waiting for the alias"
        log.info(
            "serving %s@%s (%s) from %s on %s",
            args.model,
            args.alias,
            served,
            redact_url(uri),
            where,
        )

        import uvicorn

        stop = threading.Event()
        threading.Thread(target=app.follow, args=(args.poll_s, stop), daemon=True).start()
        shadow = _start_shadow(app, args) if args.shadow else None
        # uvicorn stops on SIGTERM, restores the handler it found and raises the signal again:
        # with this handler that ends in SystemExit, so the cleanup below (the shadow's last
        # log part) runs, also where SIGTERM was ignored when the server was started.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
        finally:
            stop.set()
            if shadow is not None:
                shadow.close()
                log.info("shadow: %d requests dropped (queue full)", shadow.dropped)
        return 0
    finally:
        shutil.rmtree(models_dir, ignore_errors=True)


def _start_shadow(app: AliasFollowingApp, args):
    """Start the shadow process (:func:`_shadow_process`) and hand it every checked request."""
    from housing_assets.io.shadow import ShadowScorer

    settings_for_child = (
        settings.mlflow_tracking_uri(),
        args.model,
        args.shadow,
        args.request_log,
        args.poll_s,
        args.allow_missing_digest,
    )
    scorer = ShadowScorer(_shadow_process, settings_for_child)
    app.on_request = lambda body, served: scorer.submit(body, served.version)
    log.info(
        "shadow: scoring every request with %s@%s too, logged to %s",
        args.model,
        args.shadow,
        args.request_log,
    )
    return scorer


def _shadow_process(requests, uri, model, alias, request_log, poll_s, allow_missing_digest):
    """The shadow process: follows the shadow alias (loaded and checked like the served one;
    answering nobody), loads each champion version it is told about the same way, and scores
    the queued requests with both (:func:`housing_assets.io.shadow.score_requests`)."""
    import mlflow

    from housing_assets.io.shadow import RequestLog, score_requests

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.nice(10)  # the server's requests first
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    models_dir = tempfile.mkdtemp(prefix="housing-shadow-")
    follower = AliasFollowingApp(
        client, model, alias, wait=True, allow_missing_digest=allow_missing_digest,
        models_dir=models_dir,
    )  # fmt: skip
    stop = threading.Event()
    threading.Thread(target=follower.follow, args=(poll_s, stop), daemon=True).start()
    champions: dict[str, Any] = {}

    def champion(version: str):
        if version not in champions:
            champions.clear()  # one champion at a time
            champions[version] = follower._load(version).model
        return champions[version]

    try:
        scored = score_requests(requests, follower.loaded, champion, RequestLog(request_log))
        log.info("shadow: %d requests scored", scored)
    finally:
        stop.set()
        shutil.rmtree(models_dir, ignore_errors=True)


_EPILOG = f"""model files:
  A version is served only if its files, fetched from the artifact store, match the digest
  recorded on it (model-version tag {DIGEST_TAG!r}), checked before anything in them is loaded.
  At start a mismatch or a missing tag stops the server (exit status 3); when the alias moves to
  such a version, the server keeps serving the version it has and logs the refusal.

requests (POST /invocations):
  application/json with one of dataframe_records, dataframe_split, instances or inputs (and
  params only if the model declares them), or text/csv, UTF-8. Every format gets the same row
  checks (the training data's columns, types and ranges). Malformed bodies get 400, other
  content types (Parquet included) 415, oversized ones 413.
"""


if __name__ == "__main__":
    sys.exit(main())
