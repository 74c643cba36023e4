"""The landing zone where new raw batches arrive: a local folder or a ``gs://bucket/prefix``.

Users drop batch files (.csv, .csv.gz, .tgz, .tar.gz) at the top level. The retraining sensor
validates each new one and moves it to ``accepted/`` or, with a ``.reason.txt`` beside it, to
``quarantine/``. Nothing is ever deleted: a move copies first and removes the original only
once the copy is in place.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from housing_assets.ml.source import SUPPORTED_SUFFIXES

ACCEPTED = "accepted"
QUARANTINE = "quarantine"


@dataclass(frozen=True)
class Batch:
    name: str  # file name, unique within its folder
    url: str  # where it lives now
    payload: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.payload).hexdigest()


def is_batch_name(name: str) -> bool:
    return name.lower().endswith(SUPPORTED_SUFFIXES) and not name.startswith(".")


class Landing:
    """Operations the sensor and ``raw_housing`` need, for one backend."""

    url: str

    def list_names(self, folder: str = "") -> list[str]:
        raise NotImplementedError

    def read(self, name: str, folder: str = "") -> Batch:
        raise NotImplementedError

    def write(self, name: str, data: bytes, folder: str) -> None:
        raise NotImplementedError

    def remove(self, name: str, folder: str = "") -> None:
        raise NotImplementedError

    def incoming(self) -> list[str]:
        """Batch files waiting at the top level, oldest name first."""
        return sorted(n for n in self.list_names() if is_batch_name(n))

    def accepted_names(self) -> list[str]:
        """Batch files in ``accepted/``, oldest name first."""
        return sorted(n for n in self.list_names(ACCEPTED) if is_batch_name(n))

    def accepted(self) -> list[Batch]:
        return [self.read(n, ACCEPTED) for n in self.accepted_names()]

    def move(self, batch: Batch, folder: str, reason: str | None = None) -> str:
        """Move an incoming batch into ``folder`` (copy, then remove); returns its new name."""
        taken = set(self.list_names(folder))
        name = batch.name
        if name in taken:  # the same name dropped twice: keep both, told apart by content
            stem, suffix = _split_suffix(name)
            name = f"{stem}-{batch.sha256[:8]}{suffix}"
        self.write(name, batch.payload, folder)
        if reason is not None:
            self.write(f"{name}.reason.txt", reason.encode(), folder)
        self.remove(batch.name)
        return name


def _split_suffix(name: str) -> tuple[str, str]:
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)], name[-len(suffix) :]
    return name, ""


class LocalLanding(Landing):
    def __init__(self, path: str | Path):
        self.root = Path(path)
        self.url = str(self.root)

    def _dir(self, folder: str) -> Path:
        return self.root / folder if folder else self.root

    def list_names(self, folder: str = "") -> list[str]:
        """Regular files only: symlinks, folders, FIFOs and devices are never batches (a link
        must not pull a file from elsewhere into the data)."""
        directory = self._dir(folder)
        if not directory.is_dir():
            return []
        with os.scandir(directory) as entries:
            return [e.name for e in entries if e.is_file(follow_symlinks=False)]

    def read(self, name: str, folder: str = "") -> Batch:
        path = self._dir(folder) / name
        # O_NOFOLLOW: a file swapped for a symlink after listing is refused, not followed.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise OSError(f"{path}: not a regular file")
            return Batch(name, str(path), handle.read())

    def write(self, name: str, data: bytes, folder: str) -> None:
        directory = self._dir(folder)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{name}.partial"
        tmp.write_bytes(data)
        tmp.replace(directory / name)

    def remove(self, name: str, folder: str = "") -> None:
        (self._dir(folder) / name).unlink()


class GCSLanding(Landing):
    # Well inside the 60 s a sensor tick may take: an unreachable bucket fails the tick clearly.
    def __init__(self, url: str, client, deadline_s: float = 20.0):
        from housing_assets.gcs import split_gs_url

        self.url = url.rstrip("/")
        self.bucket_name, prefix = split_gs_url(self.url)
        self.prefix = prefix.strip("/")
        self.deadline_s = deadline_s
        self.client = client

    def _key(self, name: str, folder: str) -> str:
        return "/".join(p for p in (self.prefix, folder, name) if p)

    def list_names(self, folder: str = "") -> list[str]:
        from housing_assets.gcs import call, retry_policy

        prefix = self._key("", folder)
        prefix = f"{prefix}/" if prefix else ""

        def names() -> list[str]:
            blobs = self.client.list_blobs(
                self.bucket_name,
                prefix=prefix,
                delimiter="/",
                retry=retry_policy(self.deadline_s),
                timeout=self.deadline_s,
            )
            return [b.name[len(prefix) :] for b in blobs if b.name != prefix]

        return call("listing", f"gs://{self.bucket_name}/{prefix}", names, self.deadline_s)

    def read(self, name: str, folder: str = "") -> Batch:
        from housing_assets.gcs import read_bytes

        url = f"gs://{self.bucket_name}/{self._key(name, folder)}"
        return Batch(name, url, read_bytes(url, self.deadline_s, self.client))

    def write(self, name: str, data: bytes, folder: str) -> None:
        from housing_assets.gcs import write_bytes

        write_bytes(
            f"gs://{self.bucket_name}/{self._key(name, folder)}", data, self.deadline_s, self.client
        )

    def remove(self, name: str, folder: str = "") -> None:
        from housing_assets.gcs import call, retry_policy

        blob = self.client.bucket(self.bucket_name).blob(self._key(name, folder))
        call(
            "removing the original after copying",
            f"gs://{self.bucket_name}/{blob.name}",
            lambda: blob.delete(retry=retry_policy(self.deadline_s), timeout=self.deadline_s),
            self.deadline_s,
        )


def open_landing(url: str, gcs=None) -> Landing:
    """The landing zone at ``url``; a ``gs://`` one through dagster-gcp's ``GCSResource``
    (``gcs``, else one for this environment)."""
    if url.startswith("gs://"):
        from housing_assets.gcs import storage_client

        return GCSLanding(url, storage_client(gcs))
    return LocalLanding(url)
