"""An ASGI guard in front of the Dagster UI: it passes a request on only when the operator
meant it.

dagster-webserver has no authentication, runs GraphQL mutations sent as GET requests, and
answers any ``Host`` and ``Origin``: a link or an ``<img>`` on any web page the operator opens
could launch or delete runs, and DNS rebinding reaches it even on 127.0.0.1. The guard:

1. answers only the configured host names (``Host``), any port;
2. refuses a browser request from another origin (``Origin``, sent by browsers on every
   cross-origin request, every POST and every WebSocket);
3. asks for HTTP Basic credentials (the browser asks once per session), except for
   ``GET /server_info``, which health checks read and which tells only Dagster's version;
4. runs GraphQL only from POST requests with a JSON body: a GET carrying a query is refused,
   and so is any POST, PUT, PATCH or DELETE whose body is not ``application/json``.

It knows nothing of Dagster beyond those paths; ``platform/webserver.py`` wraps Dagster's app
with it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from housing_assets.settings import UISettings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATH = "/server_info"  # GET only, no credentials (health checks; under any path prefix)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REALM = 'Basic realm="housing_assets Dagster UI", charset="UTF-8"'

log = logging.getLogger("housing_assets.ui_guard")


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str
    challenge: bool = False  # ask the browser for credentials (401)


def check(scope: Scope, settings: UISettings) -> Refusal | None:
    """Why this request must not reach the UI, or None when it may."""
    headers = _headers(scope)
    host = _hostname(headers.get("host", ""))
    if host not in settings.allowed_hosts:
        return Refusal(421, f"host {host!r} is not in HOUSING_UI_ALLOWED_HOSTS")
    origin = headers.get("origin")
    if origin is not None and not origin_allowed(origin, settings):
        return Refusal(403, f"origin {origin!r} is not allowed (HOUSING_UI_ALLOWED_ORIGINS)")
    method = scope.get("method", "GET")  # a WebSocket has no method: its handshake is a GET
    path = _app_path(scope)
    if method in ("GET", "HEAD") and path.endswith(OPEN_PATH):
        return None
    if not authenticated(headers.get("authorization", ""), settings):
        return Refusal(401, "credentials required", challenge=True)
    if scope["type"] == "http":
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if path.endswith("/graphql") and method in ("GET", "HEAD") and "query" in query:
            return Refusal(405, "GraphQL runs only from POST with a JSON body")
        if method in UNSAFE_METHODS:
            media_type = headers.get("content-type", "").split(";")[0].strip().lower()
            if media_type != "application/json":
                return Refusal(415, f"{method} needs Content-Type: application/json")
    return None


def origin_allowed(origin: str, settings: UISettings) -> bool:
    """An origin listed in HOUSING_UI_ALLOWED_ORIGINS, or, when none are listed, http(s) on an
    allowed host name (any port)."""
    origin = origin.lower()
    if settings.allowed_origins:
        return origin in settings.allowed_origins
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and (parts.hostname or "") in settings.allowed_hosts


def authenticated(authorization: str, settings: UISettings) -> bool:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(token.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    # Both compared in constant time, and both always compared.
    user_ok = hmac.compare_digest(user.encode(), settings.user.encode())
    password_ok = hmac.compare_digest(password.encode(), settings.password.encode())
    return user_ok and password_ok


class UIGuard:
    """ASGI middleware: ``UIGuard(app, settings)`` passes on what :func:`check` allows."""

    def __init__(self, app: ASGIApp, settings: UISettings):
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        refusal = check(scope, self.settings)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("?", 0))[0]
        log.warning(
            "Refused %s %s from %s: %s",
            scope.get("method", "WEBSOCKET"),
            json.dumps(_app_path(scope)),  # quoted: a name cannot forge a log line
            client,
            refusal.reason,
        )
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403
            return
        body = json.dumps({"error": refusal.reason}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if refusal.challenge:
            headers.append((b"www-authenticate", REALM.encode()))
        await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _headers(scope: Scope) -> dict[str, str]:
    """Request headers by lower-case name; a repeated header keeps its first value."""
    headers: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return headers


def _hostname(host: str) -> str:
    """The name in a Host header, without its port: ``[::1]:3000`` → ``::1``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else ""
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _app_path(scope: Scope) -> str:
    path = scope.get("path", "/")
    root = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path
