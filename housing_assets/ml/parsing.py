"""Parse a raw dataset's bytes (.tgz, .tar.gz, .csv.gz, .csv) into the canonical raw frame."""

from __future__ import annotations

import gzip
import io
import tarfile
import zlib
from urllib.parse import urlparse

import pandas as pd

from housing_assets.ml.schema import DataValidationError, coerce_raw

SUPPORTED_SUFFIXES = (".tgz", ".tar.gz", ".csv.gz", ".csv")


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
