"""``housing-webserver``: Dagster's webserver behind the project's guard (``ui_guard.py``).

    housing-webserver -h 0.0.0.0 -p 3000 -w deploy/workspace.yaml

takes every option of ``dagster-webserver`` and serves the same UI, with a password
(``HOUSING_UI_PASSWORD`` or ``HOUSING_UI_PASSWORD_FILE``; user ``HOUSING_UI_USER``, default
``operator``), the allowed host names and origins, and GraphQL from JSON POSTs only. The
settings are checked before the server starts: a missing password stops it with a message.

Why middleware and not a reverse proxy: one process, nothing new to deploy, the same
protection for ``make dev`` and the compose stack, and no unprotected port behind it that a
browser on the same machine could still reach.

A database restart does not break the next request: dagster-webserver keeps one pooled
PostgreSQL connection per storage, and after PostgreSQL restarts the next request on that dead
connection fails ("server closed the connection unexpectedly"; Dagster issue 33879). This
command tests each pooled connection as it is checked out (SQLAlchemy's pessimistic disconnect
handling, :func:`ping_pooled_connections`) and the pool replaces a dead one before use.

Private Dagster API it relies on (Dagster is pinned; housing_assets_tests/test_ui_guard.py
fails when it changes): ``dagster_webserver.cli`` builds its app by calling the module-level
name ``create_app_from_workspace_process_context``; this command runs that CLI with the name
bound to a function that wraps the same app in :class:`UIGuard`.
"""

from __future__ import annotations

import contextlib
import sys

from housing_assets.platform.ui_guard import UIGuard
from housing_assets.settings import SettingsError, UISettings


def ping_pooled_connections(target=None) -> None:
    """Test each pooled database connection of ``target`` (an engine or pool; default: every
    pool of this process) when it is checked out; a dead one is replaced before the caller uses
    it (the pool retries the checkout). One round trip per checkout."""
    from sqlalchemy import event, exc
    from sqlalchemy.pool import Pool

    @event.listens_for(Pool if target is None else target, "checkout")
    def ping(dbapi_connection, connection_record, connection_proxy):
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
        except Exception as error:
            raise exc.DisconnectionError(f"stale pooled connection: {error}") from error
        finally:
            with contextlib.suppress(Exception):  # a dead connection's cursor may not close
                cursor.close()


def guarded_app_factory(settings: UISettings):
    """Dagster's app factory, with the returned app wrapped in the guard."""
    from dagster_webserver.app import create_app_from_workspace_process_context

    def create_guarded_app(*args, **kwargs):
        return UIGuard(create_app_from_workspace_process_context(*args, **kwargs), settings)

    return create_guarded_app


def main(argv: list[str] | None = None) -> None:
    import dagster_webserver.cli as webserver_cli

    args = sys.argv[1:] if argv is None else argv
    if not {"--help", "--version"} & set(args):
        try:
            settings = UISettings.from_env()
        except SettingsError as exc:
            sys.exit(f"housing-webserver: {exc}")
        webserver_cli.create_app_from_workspace_process_context = guarded_app_factory(settings)
        ping_pooled_connections()
    webserver_cli.cli.main(
        args=args, prog_name="housing-webserver", auto_envvar_prefix="DAGSTER_WEBSERVER"
    )


if __name__ == "__main__":
    main()
