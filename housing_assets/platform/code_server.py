"""An opt-in gRPC code server for the code location, with runs that start warm.

Opt-in and apart from the product: nothing in the code location imports this module. Only a
deployment that runs the ``housing-code-server`` command instead of Dagster's ``dagster api
grpc`` uses it (the compose stack's code service does); `make dev`, `dagster dev` and the
CLI use Dagster's own server or none, and behave exactly the same without it.

Dagster's code server starts every run it launches (UI, sensor, schedule,
``dagster job launch``) in a fresh *spawned* interpreter, which then imports Dagster, pandas,
scikit-learn, the code location, MLflow, W&B and matplotlib before the first step computes:
~9 s of every run on the 2-core machines here, paid again per run. This server is the same
server with one change: runs are forked from a *forkserver* that imported all of that once,
when the server started (``warm_worker``). A run's process is still a process of its own, a
copy of the forkserver, which holds imports only (no Python thread, open store, OpenMP pool or
W&B service; OpenBLAS re-creates its own threads after a fork), so crashes, termination and
run monitoring behave as before. A forked run ends with ``os._exit`` (multiprocessing's
forkserver), so it skips the interpreter's final garbage collection of all those imports too.

    housing-code-server -h 0.0.0.0 -p 4000 -m housing_assets.definitions

takes the options of ``dagster api grpc``. The server reports healthy once the forkserver is
warm. If the forkserver cannot start, runs are spawned as by the stock server (logged); if one
of its imports fails, runs import it themselves.

Private Dagster API it relies on (Dagster is pinned; housing_assets_tests/test_code_server.py
fails when one changes): it subclasses ``dagster._grpc.server.DagsterApiServer`` and replaces
the multiprocessing context it starts runs with (``_mp_ctx``, "spawn" in Dagster), and it runs
``dagster._cli.api.grpc_command`` with that subclass in place of ``DagsterApiServer``, which
the command imports when called.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time

#: Imported once by the forkserver, so that every run forked from it finds them loaded.
WARM_MODULES = ["housing_assets.platform.warm_worker"]


def warm_api_server_class():
    """Dagster's gRPC API servicer, starting runs through a preloaded forkserver."""
    from dagster._grpc.server import DagsterApiServer

    class WarmStartApiServer(DagsterApiServer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._mp_ctx = warm_context(self._logger)  # the stock server's: "spawn"

    return WarmStartApiServer


def warm_context(logger: logging.Logger):
    """A forkserver context whose server has imported ``WARM_MODULES``: it is started, and one
    process forked from it, before this returns, so the server reports healthy only once runs
    start warm. Dagster's "spawn" context if that fails (the error is logged)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(WARM_MODULES)
    try:
        started = time.perf_counter()
        probe = context.Process(target=os.getpid)
        probe.start()
        probe.join(timeout=600)
        if probe.exitcode != 0:
            raise RuntimeError(f"a process forked from it exited with {probe.exitcode}")
    except Exception as exc:
        logger.warning("Runs will start in a spawned interpreter: no forkserver (%s)", exc)
        return multiprocessing.get_context("spawn")
    logger.info("Runs start from a forkserver, warm in %.1f s", time.perf_counter() - started)
    return context


def main(argv: list[str] | None = None) -> None:
    """``dagster api grpc`` with :func:`warm_api_server_class` as its servicer."""
    import dagster._grpc.server as grpc_server
    from dagster._cli.api import grpc_command

    grpc_server.DagsterApiServer = warm_api_server_class()  # read by grpc_command when called
    grpc_command.main(args=sys.argv[1:] if argv is None else argv, prog_name="housing-code-server")


if __name__ == "__main__":
    main()
