"""Fetch a raw dataset from a URL (http, https, file, gs or a plain path) and parse it."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd

from housing_assets.ml.schema import DataValidationError, coerce_raw
from housing_assets.redaction import redact_url

DEFAULT_SOURCE_URL = (
    "https://raw.githubusercontent.com/ageron/handson-ml2/master/datasets/housing/housing.tgz"
)
SUPPORTED_SUFFIXES = (".tgz", ".tar.gz", ".csv.gz", ".csv")


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
    from housing_assets.gcs import GCSError, read_bytes, storage_client

    try:
        return read_bytes(url, client=storage_client(gcs))
    except GCSError as exc:  # already retried inside; say it once, with the location
        raise SourceError(str(exc)) from exc


def parse_payload(payload: bytes, name: str) -> pd.DataFrame:
    """Parse .tgz/.tar.gz (one CSV member), .csv.gz or .csv bytes into a canonical raw frame.

    Compressed files are decompressed whole first, so gzip's CRC-32 and length checks run: a
    corrupt archive is an error naming the file, never a frame with changed values.
    """
    lower = urlparse(name).path.lower() if "://" in name else name.lower()
    try:
        if lower.endswith((".tgz", ".tar.gz")):
            csv_bytes = _csv_from_tar(_gunzip_whole(payload), name)
        elif lower.endswith(".csv.gz"):
            csv_bytes = _gunzip_whole(payload)
        elif lower.endswith(".csv"):
            csv_bytes = payload
        else:
            raise DataValidationError(
                f"{name}: unsupported file type (expected one of {', '.join(SUPPORTED_SUFFIXES)})"
            )
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, OSError, zlib.error) as exc:
        raise DataValidationError(f"{name}: corrupt archive ({type(exc).__name__}: {exc})") from exc
    try:
        text = csv_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataValidationError(f"{name}: not UTF-8 text ({exc})") from exc
    if not text.strip():
        raise DataValidationError(f"{name}: the file is empty")
    try:
        frame = pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataValidationError(f"{name}: malformed CSV ({exc})") from exc
    return coerce_raw(frame, name)


def _gunzip_whole(payload: bytes) -> bytes:
    """Decompress a whole gzip stream; its CRC-32 and length trailer are verified."""
    return gzip.decompress(payload)


def _csv_from_tar(payload: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:") as archive:
        members = [m for m in archive.getmembers() if m.isfile() and m.name.endswith(".csv")]
        if len(members) != 1:
            raise DataValidationError(
                f"{name}: expected exactly one .csv member in the archive, found "
                f"{[m.name for m in members]}"
            )
        extracted = archive.extractfile(members[0])
        assert extracted is not None
        return extracted.read()
