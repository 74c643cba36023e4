"""Fetch a raw dataset's bytes from a URL: http(s) and gs (retried), file or a plain path."""

from __future__ import annotations

import hashlib
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from housing_assets.io.redaction import redact_url

DEFAULT_SOURCE_URL = (
    "https://raw.githubusercontent.com/ageron/handson-ml2/master/datasets/housing/housing.tgz"
)


class SourceError(RuntimeError):
    """The dataset could not be fetched; the message names the location and the reason."""


@dataclass(frozen=True)
class FetchedSource:
    url: str
    payload: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.payload).hexdigest()

    @property
    def size_bytes(self) -> int:
        return len(self.payload)


def fetch(url: str, *, retries: int = 3, timeout_s: float = 30.0, gcs=None) -> FetchedSource:
    """Read the bytes behind ``url``; http(s) and gs reads are retried with backoff. A ``gs://``
    URL is read through dagster-gcp's ``GCSResource`` ``gcs`` (else one for this environment)."""
    parsed = urlparse(url)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        return FetchedSource(url, _with_retries(url, retries, lambda: _read_http(url, timeout_s)))
    if scheme == "gs":
        return FetchedSource(url, read_gcs_bytes(url, gcs))  # retried inside, bounded
    if scheme == "file":
        path = Path(unquote(parsed.path))
    elif scheme == "" or len(scheme) == 1:  # plain path (a one-letter scheme is a Windows drive)
        path = Path(url)
    else:
        raise SourceError(
            f"{redact_url(url)}: unsupported URL scheme '{scheme}' (use http, https, file or gs)"
        )
    if not path.is_file():
        raise SourceError(f"{redact_url(url)}: no such file ({path})")
    return FetchedSource(url, path.read_bytes())


def _with_retries(url: str, retries: int, read):
    last: Exception | None = None
    for attempt in range(retries):
        try:
            return read()
        except SourceError:
            raise
        except Exception as exc:  # network errors of every kind are retried
            last = exc
            if attempt + 1 < retries:
                time.sleep(0.5 * 2**attempt)
    raise SourceError(
        f"{redact_url(url)}: could not be read after {retries} attempts: {last}"
    ) from last


def _read_http(url: str, timeout_s: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        if 400 <= exc.code < 500:  # a missing or forbidden file will not appear on retry
            raise SourceError(f"{redact_url(url)}: HTTP {exc.code} {exc.reason}") from exc
        raise


def read_gcs_bytes(url: str, gcs=None) -> bytes:
    from housing_assets.io.gcs import GCSError, read_bytes, storage_client

    try:
        return read_bytes(url, client=storage_client(gcs))
    except GCSError as exc:  # already retried inside; say it once, with the location
        raise SourceError(str(exc)) from exc
