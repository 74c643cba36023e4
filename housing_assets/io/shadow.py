"""Shadow scoring: a second version (``housing-serve --shadow challenger``) scores every request
the champion answers, off the request path, and both answers go to a request log.

The request handler only queues the checked request body (a bounded queue: when the shadow
falls behind, requests are counted as dropped, never delayed). One worker thread scores the
queued rows with the champion and the shadow version and appends one record per row to the
log: Parquet part files in a folder, written every ``flush_rows`` records or ``flush_s``
seconds. A request is logged by the sha256 of its body, with its feature values, so the log
also shows what users send (``housing-shadow-report`` compares it with the training rows).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger("housing-serve")

LOG_COLUMNS = [
    "time",
    "request_sha256",
    "row",
    "champion_version",
    "champion_prediction",
    "shadow_version",
    "shadow_prediction",
]


class RequestLog:
    """Records appended in memory and written as Parquet part files into ``folder``."""

    def __init__(self, folder: str | Path, flush_rows: int = 1000, flush_s: float = 10.0):
        self.folder = Path(folder)
        self.flush_rows, self.flush_s = flush_rows, flush_s
        self._records: list[pd.DataFrame] = []
        self._rows = 0
        self._last_flush = time.monotonic()
        self._parts = 0

    def append(self, frame: pd.DataFrame | None = None) -> None:
        """Buffer ``frame`` (None: nothing new) and write when enough rows or time gathered."""
        if frame is not None and len(frame):
            self._records.append(frame)
            self._rows += len(frame)
        if self._rows >= self.flush_rows or time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def flush(self) -> Path | None:
        """Write what is buffered as one part file (atomically: written, then renamed)."""
        self._last_flush = time.monotonic()
        if not self._rows:
            return None
        frame = pd.concat(self._records, ignore_index=True)
        self._records, self._rows = [], 0
        self.folder.mkdir(parents=True, exist_ok=True)
        self._parts += 1
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        path = self.folder / f"part-{stamp}-{os.getpid()}-{self._parts:05d}.parquet"
        partial = path.with_suffix(".partial")
        frame.to_parquet(partial, index=False)
        partial.rename(path)
        return path


def read_request_log(folder: str | Path) -> pd.DataFrame:
    """Every record written so far (an empty table when there is none)."""
    parts = sorted(Path(folder).glob("part-*.parquet"))
    if not parts:
        return pd.DataFrame(columns=LOG_COLUMNS)
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


def request_frame(body: bytes) -> pd.DataFrame:
    """The rows of a checked request body (``{"dataframe_split": {"columns", "data"}}``)."""
    table = json.loads(body)["dataframe_split"]
    return pd.DataFrame(table["data"], columns=table["columns"])


class ShadowScorer:
    """The parent's side: queues each checked request for the shadow process and never waits.

    Scoring runs in a process of its own (``score_in_process``), at a lower priority: in the
    server's process, two more predictions per request competed with the next request for the
    interpreter lock and doubled the latency users saw (p50 13 -> 26 ms, measured)."""

    def __init__(self, target: Callable[..., None], args: tuple, max_queued: int = 1000):
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # a clean interpreter, no inherited threads
        self.queue = context.Queue(maxsize=max_queued)
        self.dropped = 0
        self.process = context.Process(
            target=target, args=(self.queue, *args), name="housing-shadow", daemon=True
        )
        # Started with SIGTERM and SIGINT ignored (an exec keeps ignored signals ignored): a
        # signal to the whole process group must not kill it before it has written the log.
        # The parent stops it (close) once the server has stopped.
        previous = {
            sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            self.process.start()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def submit(self, body: bytes, champion_version: str) -> None:
        """Queue one checked request; never blocks (a full queue drops it, counted)."""
        try:
            self.queue.put_nowait((time.time(), body, champion_version))
        except queue.Full:
            self.dropped += 1

    def close(self, timeout_s: float = 30.0) -> None:
        """Let the process score what is queued and write the log, then stop it."""
        with contextlib.suppress(queue.Full):
            self.queue.put(None, timeout=timeout_s)
        self.process.join(timeout_s)
        if self.process.is_alive():
            self.process.terminate()


def score_requests(
    requests: Any,
    shadow: Callable[[], tuple[str, Any] | None],
    champion: Callable[[str], Any],
    request_log: RequestLog,
) -> int:
    """The shadow process's loop: score each queued request with the champion version that
    answered it and the shadow version, until ``None`` arrives; returns the requests scored."""
    scored = 0
    while True:
        try:
            item = requests.get(timeout=1.0)
        except queue.Empty:
            request_log.append()  # a timed flush
            continue
        if item is None:
            request_log.flush()
            return scored
        at, body, champion_version = item
        try:
            scored += score_one(
                at, body, champion_version, champion(champion_version), shadow(), request_log
            )
        except Exception:  # one bad request must not stop the shadow
            log.exception("shadow scoring failed for one request")


def score_one(
    at: float,
    body: bytes,
    champion_version: str,
    champion_model: Any,
    shadow: tuple[str, Any] | None,
    request_log: RequestLog,
) -> int:
    """Score one request with both versions and log a record per row (0: no shadow yet)."""
    if shadow is None:
        return 0
    shadow_version, shadow_model = shadow
    rows = request_frame(body)
    records = rows.assign(
        time=pd.Timestamp(at, unit="s", tz="UTC"),
        request_sha256=hashlib.sha256(body).hexdigest(),
        row=np.arange(len(rows)),
        champion_version=champion_version,
        champion_prediction=np.asarray(champion_model.predict(rows), dtype=float),
        shadow_version=shadow_version,
        shadow_prediction=np.asarray(shadow_model.predict(rows), dtype=float),
    )
    request_log.append(records[LOG_COLUMNS + list(rows.columns)])
    return 1
