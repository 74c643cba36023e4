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

import hashlib
import json
import logging
import os
import queue
import threading
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
    """Scores queued requests with the champion and the shadow version in one worker thread.

    ``shadow`` returns the shadow version's loaded ``(version, model)`` or None while there is
    none (the alias not set yet, or its version not loadable).
    """

    def __init__(
        self,
        shadow: Callable[[], tuple[str, Any] | None],
        request_log: RequestLog,
        max_queued: int = 1000,
    ):
        self.shadow = shadow
        self.request_log = request_log
        self.queue: queue.Queue = queue.Queue(maxsize=max_queued)
        self.dropped = 0
        self.scored = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="shadow", daemon=True)
        self._thread.start()

    def submit(self, body: bytes, champion_version: str, champion_model: Any) -> None:
        """Queue one checked request; never blocks (a full queue drops it, counted)."""
        try:
            self.queue.put_nowait((time.time(), body, champion_version, champion_model))
        except queue.Full:
            self.dropped += 1

    def close(self, timeout_s: float = 10.0) -> None:
        """Score what is queued, write the log, stop the worker."""
        self.queue.join()
        self._stop.set()
        self._thread.join(timeout_s)
        self.request_log.flush()

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                item = self.queue.get(timeout=0.5)
            except queue.Empty:
                self.request_log.append()  # a timed flush
                continue
            try:
                self._score(*item)
            except Exception:  # one bad request must not stop the shadow
                log.exception("shadow scoring failed for one request")
            finally:
                self.queue.task_done()

    def _score(self, at: float, body: bytes, champion_version: str, champion_model: Any) -> None:
        shadow = self.shadow()
        if shadow is None:
            return
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
        self.request_log.append(records[LOG_COLUMNS + list(rows.columns)])
        self.scored += 1
