"""Parse a raw dataset's bytes (.tgz, .tar.gz, .csv.gz, .csv) into the canonical raw frame."""

from __future__ import annotations

import gzip
import io
import tarfile
import zlib
from dataclasses import dataclass
from urllib.parse import urlparse

import pandas as pd

from housing_assets.ml.schema import DataValidationError, coerce_raw

SUPPORTED_SUFFIXES = (".tgz", ".tar.gz", ".csv.gz", ".csv")


@dataclass(frozen=True)
class ParseLimits:
    """What one file may cost to parse. ``max_bytes``: its size once decompressed (for a
    ``.tgz``, the tar stream); ``max_rows``: its data rows. ``None``: no limit."""

    max_bytes: int | None = None
    max_rows: int | None = None


NO_LIMITS = ParseLimits()


class TooLargeError(DataValidationError):
    """The file is over a :class:`ParseLimits` limit; it was not inflated or read past it."""


def parse_payload(
    payload: bytes, name: str, limits: ParseLimits = NO_LIMITS, label: str | None = None
) -> pd.DataFrame:
    """Parse .tgz/.tar.gz (one CSV member), .csv.gz or .csv bytes into a canonical raw frame.
    ``name`` (a file name or URL) gives the type; errors start with ``label`` (default:
    ``name``), so a caller can name an untrusted file in a form safe to show.

    Compressed files are decompressed as a stream to their end, so gzip's CRC-32 and length
    checks run: a corrupt archive is an error naming the file, never a frame with changed
    values. With ``limits``, decompression stops one byte past ``max_bytes`` and CSV parsing one
    row past ``max_rows``: a small file that inflates to gigabytes costs at most the limit.
    """
    lower = urlparse(name).path.lower() if "://" in name else name.lower()
    name = name if label is None else label
    try:
        if lower.endswith((".tgz", ".tar.gz")):
            csv_bytes = _csv_from_tar(_gunzip(payload, name, limits.max_bytes), name)
        elif lower.endswith(".csv.gz"):
            csv_bytes = _gunzip(payload, name, limits.max_bytes)
        elif lower.endswith(".csv"):
            _check_size(len(payload), name, limits.max_bytes)
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
    del csv_bytes
    if not text.strip():
        raise DataValidationError(f"{name}: the file is empty")
    nrows = None if limits.max_rows is None else limits.max_rows + 1
    try:
        frame = pd.read_csv(io.StringIO(text), nrows=nrows)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataValidationError(f"{name}: malformed CSV ({exc})") from exc
    if limits.max_rows is not None and len(frame) > limits.max_rows:
        raise TooLargeError(
            f"{name}: more than {limits.max_rows:,} data rows (the limit per batch)"
        )
    return coerce_raw(frame, name)


def _check_size(size: int, name: str, max_bytes: int | None) -> None:
    if max_bytes is not None and size > max_bytes:
        raise TooLargeError(
            f"{name}: more than {max_bytes:,} bytes of data once decompressed (the limit per batch)"
        )


def _gunzip(payload: bytes, name: str, max_bytes: int | None) -> bytes:
    """Decompress a gzip stream (every member) as a stream, at most ``max_bytes`` + 1 bytes of
    output; read to its end, its CRC-32 and length trailers are verified."""
    with gzip.GzipFile(fileobj=io.BytesIO(payload)) as stream:
        data = stream.read(-1 if max_bytes is None else max_bytes + 1)
    _check_size(len(data), name, max_bytes)
    return data


def _csv_from_tar(payload: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:") as archive:
        members = [m for m in archive.getmembers() if m.isfile() and m.name.endswith(".csv")]
        if len(members) != 1:
            raise DataValidationError(
                f"{name}: expected exactly one .csv member in the archive, found {len(members)}"
            )
        extracted = archive.extractfile(members[0])
        assert extracted is not None
        return extracted.read()
