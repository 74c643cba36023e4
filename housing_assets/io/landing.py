"""The landing zone where new raw batches arrive: a local folder or a ``gs://bucket/prefix``.

Users drop batch files (.csv, .csv.gz, .tgz, .tar.gz) at the top level. The retraining sensor
validates each new one and moves it to ``accepted/`` or, with a ``.reason.txt`` beside it, to
``quarantine/``. Nothing is ever deleted: a move copies first and removes the original only
once the copy is in place, and only if the original is still what was read.

A file is taken only when finished. On GCS an object is visible only once its upload is
complete. In a folder, a file is finished once it has not been written for ``settle_s``
seconds (a plain ``cp`` in progress keeps writing and is never read half-way), or at once if
its change time shows it was renamed after its last write (write a hidden ``.name.partial``,
then ``mv``). Measured on ext4 here: the timestamp clock ticks every ~4 ms and a rename
straight after the write usually shares its tick, so the fast path is a bonus, not a promise;
the settle time is what holds. Hidden files, links and special files are never batches.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from housing_assets.ml.parsing import SUPPORTED_SUFFIXES

ACCEPTED = "accepted"
QUARANTINE = "quarantine"


class BatchChangedError(RuntimeError):
    """The original changed after it was read: it is left in place for the next tick."""


@dataclass(frozen=True)
class Batch:
    name: str  # file name, unique within its folder
    url: str  # where it lives now
    payload: bytes
    stamp: tuple = ()  # what identifies this content in storage (size/mtime/inode, generation)

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

    def remove(self, name: str, folder: str = "", stamp: tuple = ()) -> None:
        """Remove ``name``; with a ``stamp``, only if it is still that content (else
        :class:`BatchChangedError`)."""
        raise NotImplementedError

    def is_finished(self, name: str) -> bool:
        """Whether the writer of an incoming file is done with it (see the module docstring)."""
        return True

    def incoming(self) -> list[str]:
        """Finished batch files waiting at the top level, oldest name first."""
        return sorted(n for n in self.list_names() if is_batch_name(n) and self.is_finished(n))

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
            self.write(f"{name}.reason.txt", f"{reason.rstrip()}\n".encode(), folder)
        try:
            self.remove(batch.name, stamp=batch.stamp)
        except BatchChangedError:  # still being written: undo the copy, keep the original
            self.remove(name, folder)
            if reason is not None:
                self.remove(f"{name}.reason.txt", folder)
            raise
        return name


def _split_suffix(name: str) -> tuple[str, str]:
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)], name[-len(suffix) :]
    return name, ""


class LocalLanding(Landing):
    def __init__(self, path: str | Path, settle_s: float = 3.0):
        self.root = Path(path)
        self.url = str(self.root)
        self.settle_s = settle_s

    def is_finished(self, name: str) -> bool:
        info = os.lstat(self.root / name)
        renamed_after_writing = info.st_ctime_ns > info.st_mtime_ns
        return renamed_after_writing or time.time() - info.st_mtime >= self.settle_s

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
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise OSError(f"{path}: not a regular file")
            payload = handle.read()
            return Batch(name, str(path), payload, (len(payload), info.st_mtime_ns, info.st_ino))

    def write(self, name: str, data: bytes, folder: str) -> None:
        directory = self._dir(folder)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{name}.partial"
        tmp.write_bytes(data)
        tmp.replace(directory / name)

    def remove(self, name: str, folder: str = "", stamp: tuple = ()) -> None:
        path = self._dir(folder) / name
        if stamp:
            info = os.lstat(path)
            if (info.st_size, info.st_mtime_ns, info.st_ino) != stamp:
                raise BatchChangedError(f"{name}: changed while it was being read")
        path.unlink()


class GCSLanding(Landing):
    # Well inside the 60 s a sensor tick may take: an unreachable bucket fails the tick clearly.
    def __init__(self, url: str, client, deadline_s: float = 20.0):
        from housing_assets.io.gcs import split_gs_url

        self.url = url.rstrip("/")
        self.bucket_name, prefix = split_gs_url(self.url)
        self.prefix = prefix.strip("/")
        self.deadline_s = deadline_s
        self.client = client

    def _key(self, name: str, folder: str) -> str:
        return "/".join(p for p in (self.prefix, folder, name) if p)

    def list_names(self, folder: str = "") -> list[str]:
        from housing_assets.io.gcs import call, retry_policy

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
        from housing_assets.io.gcs import call, retry_policy

        url = f"gs://{self.bucket_name}/{self._key(name, folder)}"
        blob = self.client.bucket(self.bucket_name).blob(self._key(name, folder))

        def download() -> bytes:
            return blob.download_as_bytes(
                retry=retry_policy(self.deadline_s), timeout=self.deadline_s
            )

        payload = call("download", url, download, self.deadline_s)
        return Batch(name, url, payload, (blob.generation,))  # the generation downloaded

    def write(self, name: str, data: bytes, folder: str) -> None:
        from housing_assets.io.gcs import write_bytes

        write_bytes(
            f"gs://{self.bucket_name}/{self._key(name, folder)}", data, self.deadline_s, self.client
        )

    def remove(self, name: str, folder: str = "", stamp: tuple = ()) -> None:
        from google.api_core.exceptions import PreconditionFailed

        from housing_assets.io.gcs import call, retry_policy

        blob = self.client.bucket(self.bucket_name).blob(self._key(name, folder))
        generation = stamp[0] if stamp else None  # only the generation that was read

        def delete() -> None:
            try:
                blob.delete(
                    retry=retry_policy(self.deadline_s),
                    timeout=self.deadline_s,
                    if_generation_match=generation,
                )
            except PreconditionFailed as exc:
                raise BatchChangedError(f"{name}: replaced while it was being read") from exc

        call("removing the original after copying", f"gs://{blob.name}", delete, self.deadline_s)


def open_landing(url: str, gcs=None, settle_s: float = 3.0) -> Landing:
    """The landing zone at ``url``; a ``gs://`` one through dagster-gcp's ``GCSResource``
    (``gcs``, else one for this environment). ``settle_s``: see the module docstring."""
    if url.startswith("gs://"):
        from housing_assets.io.gcs import storage_client

        return GCSLanding(url, storage_client(gcs))
    return LocalLanding(url, settle_s)
