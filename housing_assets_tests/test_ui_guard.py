"""The Dagster UI's guard (``housing-webserver``): the rules on synthetic requests, then the
attacks that worked on bare dagster-webserver, against the real command, as `make dev` runs it."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import websockets.exceptions
import websockets.sync.client as ws_client
from requests.auth import HTTPBasicAuth

from housing_assets.platform.ui_guard import UIGuard, check
from housing_assets.settings import SettingsError, UISettings
from housing_assets_testkit import REPO_ROOT, background_server, free_port

PASSWORD = "correct-horse-battery-staple"
SETTINGS = UISettings.from_env({"HOUSING_UI_PASSWORD": PASSWORD})


def basic(user: str = "operator", password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def scope(
    method: str = "POST",
    path: str = "/graphql",
    *,
    host: str = "127.0.0.1:3000",
    query: str = "",
    kind: str = "http",
    **headers: str,
) -> dict:
    names = {"authorization": basic(), "content-type": "application/json", "host": host}
    names.update({k.replace("_", "-"): v for k, v in headers.items()})
    return {
        "type": kind,
        "method": method,
        "path": path,
        "query_string": query.encode(),
        "headers": [(k.encode(), v.encode()) for k, v in names.items() if v is not None],
    }


# --- the rules ------------------------------------------------------------------------------


def test_the_operators_requests_pass():
    assert check(scope(), SETTINGS) is None
    assert check(scope("GET", "/runs", content_type=None), SETTINGS) is None
    assert check(scope(origin="http://localhost:3000"), SETTINGS) is None
    assert check(scope(host="[::1]:3000", origin="http://[::1]:3000"), SETTINGS) is None
    assert check(scope("GET", "/graphql", kind="websocket"), SETTINGS) is None
    # Health checks need no credentials, and learn only Dagster's version.
    assert check(scope("GET", "/server_info", authorization=None), SETTINGS) is None


@pytest.mark.parametrize(
    ("request_scope", "status"),
    [
        (scope(authorization=None), 401),
        (scope(authorization=basic(password="wrong-password-here")), 401),
        (scope(authorization=basic(user="admin")), 401),
        (scope(authorization="Basic !!!not-base64"), 401),
        (scope(authorization="Bearer " + PASSWORD), 401),
        (scope("POST", "/server_info", authorization=None), 401),
        (scope("GET", "/graphql", query="query=mutation%7BlaunchRun%7D"), 405),
        (scope("GET", "/prefix/graphql", query="query=%7Bversion%7D"), 405),
        (scope(content_type="text/plain"), 415),  # a "simple" cross-site form post
        (scope(content_type="application/x-www-form-urlencoded"), 415),
        (scope(content_type="multipart/form-data; boundary=x"), 415),
        (scope(content_type=None), 415),
        (scope("DELETE", "/runs/1", content_type=None), 415),
        (scope(host="evil.example"), 421),  # DNS rebinding: the browser sends the attacker's name
        (scope(host="evil.example:3000"), 421),
        (scope(host=""), 421),
        (scope(origin="http://evil.example"), 403),
        (scope(origin="null"), 403),  # a sandboxed frame or a file:// page
        (scope(origin="http://localhost.evil.example:3000"), 403),
        (scope("GET", "/graphql", kind="websocket", origin="https://evil.example"), 403),
        (scope("GET", "/graphql", kind="websocket", authorization=None), 401),
    ],
)
def test_what_the_operator_did_not_mean_is_refused(request_scope, status):
    refusal = check(request_scope, SETTINGS)
    assert refusal is not None and refusal.status == status, refusal


def test_listed_origins_replace_the_host_rule():
    settings = UISettings.from_env(
        {
            "HOUSING_UI_PASSWORD": PASSWORD,
            "HOUSING_UI_ALLOWED_HOSTS": "dagster.example.com",
            "HOUSING_UI_ALLOWED_ORIGINS": "https://dagster.example.com",
        }
    )
    ok = scope(host="dagster.example.com", origin="https://dagster.example.com")
    assert check(ok, settings) is None
    plain_http = scope(host="dagster.example.com", origin="http://dagster.example.com")
    assert check(plain_http, settings).status == 403
    assert check(scope(), settings).status == 421  # 127.0.0.1 is no longer a name it answers


def test_ui_settings_name_the_variable():
    with pytest.raises(SettingsError, match="HOUSING_UI_PASSWORD or HOUSING_UI_PASSWORD_FILE"):
        UISettings.from_env({})
    with pytest.raises(SettingsError, match="HOUSING_UI_PASSWORD: .*at least 12"):
        UISettings.from_env({"HOUSING_UI_PASSWORD": "short"})
    with pytest.raises(SettingsError, match="HOUSING_UI_PASSWORD_FILE=/nonexistent/pw"):
        UISettings.from_env({"HOUSING_UI_PASSWORD_FILE": "/nonexistent/pw"})
    with pytest.raises(SettingsError, match="HOUSING_UI_ALLOWED_ORIGINS: 'http://a/b'"):
        UISettings.from_env(
            {"HOUSING_UI_PASSWORD": PASSWORD, "HOUSING_UI_ALLOWED_ORIGINS": "http://a/b"}
        )
    assert PASSWORD not in repr(SETTINGS)


def test_password_file_is_read_without_its_newline(tmp_path):
    path = tmp_path / "ui_password"
    path.write_text(PASSWORD + "\n")
    settings = UISettings.from_env({"HOUSING_UI_PASSWORD_FILE": str(path)})
    assert settings.password == PASSWORD and settings.user == "operator"


def test_a_refusal_never_reaches_the_app_and_logs_one_safe_line(caplog):
    reached = []

    async def app(scope, receive, send):
        reached.append(scope["path"])

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    guard = UIGuard(app, SETTINGS)
    forged = scope(path='/x"\nFAKE LOG LINE', authorization=None)
    asyncio.run(guard(forged, None, send))
    assert reached == [] and sent[0]["status"] == 401
    assert (b"www-authenticate", b'Basic realm="housing_assets Dagster UI", charset="UTF-8"') in (
        sent[0]["headers"]
    )
    assert [r.getMessage().count("\n") for r in caplog.records] == [0]
    asyncio.run(guard(scope(path="/runs"), None, send))
    asyncio.run(guard({"type": "lifespan", "path": "lifespan"}, None, send))  # always passes
    assert reached == ["/runs", "lifespan"]


def test_the_webserver_builds_its_app_through_the_name_we_replace():
    """Dagster is pinned; when its CLI stops building the app through this module-level name,
    the guard would silently drop out: fail here instead."""
    import inspect

    import dagster_webserver.cli as webserver_cli

    assert callable(webserver_cli.create_app_from_workspace_process_context)
    source = inspect.getsource(webserver_cli.host_dagster_ui_with_workspace_process_context)
    assert "create_app_from_workspace_process_context(" in source


# --- the real command -----------------------------------------------------------------------


def graphql(base: str, body: dict | bytes, headers: dict[str, str], method: str = "POST"):
    """(status, parsed JSON or None) for one request to the UI's GraphQL endpoint."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    url = f"{base}/graphql"
    if method == "GET":
        url += "?" + urllib.parse.urlencode({"query": body["query"]})
        data = None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None


@pytest.fixture
def guarded_webserver(isolated_env, tmp_path):
    """`housing-webserver` on a free port, with no daemon: a submitted run stays QUEUED, so an
    attack that cancels or deletes it shows in the run's status."""
    port = free_port()
    env = {**os.environ, **isolated_env, "HOUSING_UI_PASSWORD": PASSWORD}
    command = [str(Path(sys.executable).parent / "housing-webserver"), "-h", "127.0.0.1"]
    with background_server(
        [*command, "-p", str(port), "-w", str(REPO_ROOT / "workspace.yaml")],
        f"http://127.0.0.1:{port}/server_info",
        env=env,
        log_path=tmp_path / "webserver.log",
        timeout_s=180,
    ):
        yield port, tmp_path / "webserver.log"


@pytest.mark.security
def test_attacks_on_the_real_ui_change_nothing(guarded_webserver):
    from dagster_graphql import DagsterGraphQLClient

    port, log_path = guarded_webserver
    base = f"http://127.0.0.1:{port}"
    client = DagsterGraphQLClient(
        "127.0.0.1", port_number=port, auth=HTTPBasicAuth("operator", PASSWORD)
    )
    run_id = client.submit_job_execution("housing_smoke_job")  # the operator, as documented
    status = {"query": f'{{ runOrError(runId: "{run_id}") {{ ... on Run {{ status }} }} }}'}
    cancel = {"query": f'mutation {{ terminateRun(runId: "{run_id}") {{ __typename }} }}'}
    json_auth = {"Content-Type": "application/json", "Authorization": basic()}

    def run_status() -> str:
        code, answer = graphql(base, status, json_auth)
        assert code == 200, code
        return answer["data"]["runOrError"]["status"]

    assert run_status() == "QUEUED"
    attacks = {
        # an <img src> or a link: the browser sends the cached credentials with a GET
        "GET mutation": graphql(base, cancel, {"Authorization": basic()}, method="GET"),
        # a cross-site form post (no CORS preflight for text/plain)
        "form post": graphql(
            base,
            json.dumps(cancel).encode(),
            {"Authorization": basic(), "Content-Type": "text/plain"},
        ),
        # a page on another site using fetch with credentials
        "cross-origin": graphql(base, cancel, {**json_auth, "Origin": "http://evil.example"}),
        # DNS rebinding: the attacker's name resolves to 127.0.0.1
        "rebinding": graphql(base, cancel, {**json_auth, "Host": f"evil.example:{port}"}),
        "no password": graphql(base, cancel, {"Content-Type": "application/json"}),
        "wrong password": graphql(
            base,
            cancel,
            {"Content-Type": "application/json", "Authorization": basic(password="x" * 16)},
        ),
    }
    assert {name: code for name, (code, _) in attacks.items()} == {
        "GET mutation": 405,
        "form post": 415,
        "cross-origin": 403,
        "rebinding": 421,
        "no password": 401,
        "wrong password": 401,
    }
    assert run_status() == "QUEUED"  # nothing reached Dagster

    # A cross-site WebSocket (subscriptions) is refused at the handshake.
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        ws_client.connect(
            f"ws://127.0.0.1:{port}/graphql",
            origin="http://evil.example",
            additional_headers={"Authorization": basic()},
            subprotocols=["graphql-ws"],
            open_timeout=30,
        )
    assert refused.value.response.status_code == 403

    # The operator's own mutation, as the UI sends it, still works.
    code, answer = graphql(base, cancel, {**json_auth, "Origin": f"http://127.0.0.1:{port}"})
    assert code == 200 and answer["data"]["terminateRun"]["__typename"] == "TerminateRunSuccess"
    assert run_status() == "CANCELED"
    log = log_path.read_text()
    assert log.count("Refused ") == 7 and PASSWORD not in log


@pytest.mark.security
def test_the_webserver_will_not_start_without_a_password(isolated_env):
    env = {**os.environ, **isolated_env}
    env.pop("HOUSING_UI_PASSWORD", None)
    env.pop("HOUSING_UI_PASSWORD_FILE", None)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "housing-webserver"), "-p", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "HOUSING_UI_PASSWORD or HOUSING_UI_PASSWORD_FILE" in done.stderr
