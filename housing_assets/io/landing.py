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

Names are not trusted. A batch is stored in ``accepted/`` or ``quarantine/`` under a safe name
(:func:`stored_name`: control and other unprintable characters and commas replaced, at most
:data:`MAX_STORED_NAME_BYTES` bytes so that ``.reason.txt`` still fits the file system's 255);
temporary files are named by the landing zone itself, never after the batch; logs and reasons
show :func:`display_name` (escaped, capped).

``index/`` holds what the sensor needs to spot re-sent rows without re-reading the data: the
row keys of the base dataset (``base-<sha256>.npy``, written once per base content) and of
every accepted batch (``accepted.npz``), see :class:`RowKeyIndex`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from housing_assets.ml.parsing import SUPPORTED_SUFFIXES

ACCEPTED = "accepted"
QUARANTINE = "quarantine"
INDEX = "index"
REASON_SUFFIX = ".reason.txt"
# Names in accepted/ and quarantine/ stay this short (UTF-8 bytes), so that a sidecar's name
# (``<name>.reason.txt``) fits the 255 bytes of common file systems and GCS's 1024.
MAX_STORED_NAME_BYTES = 200
MAX_DISPLAY_CHARS = 120  # a name as logs and reasons show it


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


def _name_bytes(name: str) -> bytes:
    """A name as the file system has it (undecodable bytes come back as surrogates)."""
    return name.encode("utf-8", "surrogateescape")


def display_name(name: str, limit: int = MAX_DISPLAY_CHARS) -> str:
    """``name`` safe to write into a log line or a reason: unprintable characters (newlines,
    terminal escapes, direction overrides, undecodable bytes) escaped, at most ``limit``
    characters (a longer name is cut, with its length and a short hash to tell it apart)."""
    shown = "".join(ch if ch.isprintable() else _escape(ch) for ch in name)
    if len(shown) <= limit:
        return shown
    digest = hashlib.sha256(_name_bytes(name)).hexdigest()[:8]
    tail = f"…[{len(name)} chars, {digest}]"
    return shown[: max(0, limit - len(tail))] + tail


def _escape(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, as surrogateescape stores it
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return repr(ch)[1:-1] if ch in "\n\r\t" else f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def stored_name(name: str) -> str:
    """The name a batch gets in ``accepted/`` or ``quarantine/``: ``name`` itself when it is
    tame; else unprintable characters and commas (the run tag lists names with commas) become
    ``_``, and a name over :data:`MAX_STORED_NAME_BYTES` bytes is cut, a hash of the original
    name appended so that two long names stay apart. The batch suffix is kept."""
    stem, suffix = _split_suffix(name)
    stem = "".join(ch if ch.isprintable() and ch != "," else "_" for ch in stem)
    safe = stem + suffix
    if len(_name_bytes(safe)) <= MAX_STORED_NAME_BYTES:
        return safe
    digest = "-" + hashlib.sha256(_name_bytes(name)).hexdigest()[:12]
    room = MAX_STORED_NAME_BYTES - len(digest) - len(suffix)
    cut = stem.encode("utf-8")[:room].decode("utf-8", "ignore")  # whole characters only
    return f"{cut}{digest}{suffix}"


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
        """Finished batch files waiting at the top level, oldest name first. A file that
        vanishes or cannot be looked at is left for the next tick, never an error."""
        names = []
        for name in sorted(n for n in self.list_names() if is_batch_name(n)):
            try:
                if self.is_finished(name):
                    names.append(name)
            except OSError:
                continue
        return names

    def accepted_names(self) -> list[str]:
        """Batch files in ``accepted/``, oldest name first."""
        return sorted(n for n in self.list_names(ACCEPTED) if is_batch_name(n))

    def accepted(self) -> list[Batch]:
        return [self.read(n, ACCEPTED) for n in self.accepted_names()]

    def move(self, batch: Batch, folder: str, reason: str | None = None) -> str:
        """Move an incoming batch into ``folder`` (copy, then remove); returns its new name
        (:func:`stored_name`). If anything fails before the original is removed, the copy is
        undone (best effort) and the error raised: the original stays for the next tick."""
        taken = set(self.list_names(folder))
        name = stored_name(batch.name)
        if name in taken:  # the same name dropped twice: keep both, told apart by content
            stem, suffix = _split_suffix(name)
            name = f"{stem}-{batch.sha256[:8]}{suffix}"
        written: list[str] = []
        try:
            self.write(name, batch.payload, folder)
            written.append(name)
            if reason is not None:
                self.write(f"{name}{REASON_SUFFIX}", f"{reason.rstrip()}\n".encode(), folder)
                written.append(f"{name}{REASON_SUFFIX}")
            self.remove(batch.name, stamp=batch.stamp)
        except BaseException:
            for done in reversed(written):  # still being written, or storage failed: undo
                try:
                    self.remove(done, folder)
                except Exception:  # the original error is the one to report
                    continue
            raise
        return name


def _split_suffix(name: str) -> tuple[str, str]:
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)], name[-len(suffix) :]
    return name, ""


class RowKeyIndex:
    """The row keys of the data a retrain would use (base dataset + accepted batches), kept in
    the landing zone's ``index/`` so that a sensor tick reads two small objects instead of
    re-reading and re-parsing everything ever accepted.

    - ``index/base-<sha256>.npy``: the sorted unique keys of the base dataset with that sha256
      (written the first time that content is seen);
    - ``index/accepted.npz``: every accepted batch's sorted unique keys (``keys``, one run per
      batch, ending at ``ends``; ``names`` as UTF-8 JSON) and their sorted union (``union``),
      replaced whole when the set of accepted batches changes. Plain arrays, read without
      pickle. It is a cache of ``accepted/``: a batch there that it does not cover (accepted by
      an interrupted tick, by an older version, or put there by hand) is parsed once and added;
      a batch removed from ``accepted/`` is dropped. A batch edited in place in ``accepted/`` is
      not noticed (the sensor alone writes there).

    All key arrays are sorted (uint64), so a membership test is a binary search: nothing here
    sorts or hashes all the keys on a tick that only adds a batch, beyond one merge on save.
    """

    ACCEPTED_OBJECT = "accepted.npz"

    def __init__(self, landing: Landing):
        self.landing = landing
        self._listing: set[str] | None = None
        self._batches: dict[str, np.ndarray] | None = None  # name -> sorted unique keys
        self._union: np.ndarray | None = None  # sorted union of _batches (None: to compute)
        self._added: list[np.ndarray] = []  # keys added since _union was right
        self._dirty = False
        self.write_errors: list[str] = []  # of the base keys' object (best effort)

    def _names(self) -> set[str]:
        if self._listing is None:
            self._listing = set(self.landing.list_names(INDEX))
        return self._listing

    def base_keys(self, sha256: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """The base dataset's keys (sorted, unique): stored, else ``compute()``d and stored."""
        name = f"base-{sha256}.npy"
        if name in self._names():
            try:
                return _keys_from_npy(self.landing.read(name, INDEX).payload)
            except Exception:  # unreadable: computed again and replaced below
                pass
        keys = sorted_unique(compute())
        try:
            self.landing.write(name, _keys_to_npy(keys), INDEX)
            self._names().add(name)
        except Exception as exc:  # computed again next time
            self.write_errors.append(f"{INDEX}/{name}: {type(exc).__name__}: {exc}")
        return keys

    def accepted_keys(
        self, accepted_names: list[str], compute: Callable[[str], np.ndarray]
    ) -> np.ndarray:
        """The sorted union of the keys of every batch in ``accepted_names``; ``compute(name)``
        gives those of a batch the stored index does not cover (and they are added to it)."""
        batches = self._load()
        current = set(accepted_names)
        removed = set(batches) - current  # taken out of accepted/ by hand
        for name in removed:
            del batches[name]
        if removed:
            self._union, self._added, self._dirty = None, [], True
        for name in sorted(current - set(batches)):
            self.add(name, compute(name))
        return self._sorted_union()

    def add(self, name: str, keys: np.ndarray) -> None:
        """A batch just accepted as ``name``; stored by :meth:`save`."""
        batches = self._load()
        keys = sorted_unique(keys)
        if name in batches:  # replaced: the union cannot just grow
            self._union, self._added = None, []
        batches[name] = keys
        if self._union is not None:
            self._added.append(keys)
        self._dirty = True

    def save(self) -> None:
        """Write ``accepted.npz`` if it changed (one object, replaced whole)."""
        if not self._dirty or self._batches is None:
            return
        names = sorted(self._batches)
        parts = [self._batches[n] for n in names]
        keys = np.concatenate(parts) if parts else np.empty(0, dtype=np.uint64)
        buffer = io.BytesIO()
        np.savez(
            buffer,
            keys=keys,
            ends=np.cumsum([len(p) for p in parts], dtype=np.int64),
            names=np.frombuffer(json.dumps(names).encode(), dtype=np.uint8),
            union=self._sorted_union(),
        )
        self.landing.write(self.ACCEPTED_OBJECT, buffer.getvalue(), INDEX)
        self._names().add(self.ACCEPTED_OBJECT)
        self._dirty = False

    def _sorted_union(self) -> np.ndarray:
        if self._union is None:
            parts = list(self._load().values())
            self._union = sorted_unique(np.concatenate(parts)) if parts else _no_keys()
            self._added = []
        elif self._added:  # sorted runs merged (timsort: linear here), never hashed
            self._union = sorted_unique(np.concatenate([self._union, *self._added]))
            self._added = []
        return self._union

    def _load(self) -> dict[str, np.ndarray]:
        if self._batches is not None:
            return self._batches
        self._batches, self._union = {}, _no_keys()
        if self.ACCEPTED_OBJECT not in self._names():
            return self._batches
        payload = self.landing.read(self.ACCEPTED_OBJECT, INDEX).payload  # storage errors raise
        try:
            with np.load(io.BytesIO(payload), allow_pickle=False) as stored:
                keys, ends, union = stored["keys"], stored["ends"], stored["union"]
                names = json.loads(stored["names"].tobytes().decode())
            if keys.dtype != np.uint64 or union.dtype != np.uint64 or len(ends) != len(names):
                raise ValueError("not a row-key index")
        except Exception:  # not an index: rebuilt from accepted/ (each batch parsed once)
            self._dirty = True
            return self._batches
        self._batches = dict(zip(names, np.split(keys, ends[:-1]), strict=True))
        self._union = union
        return self._batches


class KnownRows:
    """Sorted key arrays (base dataset, accepted batches, this tick's batches) and a membership
    test by binary search in each: no merge of them is ever needed."""

    def __init__(self, parts: list[np.ndarray]):
        self.parts = [p for p in parts if len(p)]

    def new(self, keys: np.ndarray) -> np.ndarray:
        """The keys of ``keys`` (sorted, unique) that none of the parts holds."""
        fresh = np.ones(len(keys), dtype=bool)
        for part in self.parts:
            at = np.minimum(np.searchsorted(part, keys), len(part) - 1)
            fresh &= part[at] != keys
        return keys[fresh]

    def add(self, keys: np.ndarray) -> None:
        if len(keys):
            self.parts.append(keys)


def sorted_unique(keys) -> np.ndarray:
    """``keys`` as a sorted uint64 array without repeats. A stable sort (timsort) is linear on
    the concatenated sorted runs the index merges, where ``np.unique`` would hash them all."""
    keys = np.sort(np.asarray(keys, dtype=np.uint64), kind="stable")
    if len(keys) > 1:
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    return keys


def _no_keys() -> np.ndarray:
    return np.empty(0, dtype=np.uint64)


def _keys_to_npy(keys: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(keys, dtype=np.uint64), allow_pickle=False)
    return buffer.getvalue()


def _keys_from_npy(payload: bytes) -> np.ndarray:
    keys = np.load(io.BytesIO(payload), allow_pickle=False)
    if keys.dtype != np.uint64 or keys.ndim != 1:
        raise ValueError("not a row-key index")
    return keys


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
        # The temporary name is the landing zone's own (short, hidden, unique), never derived
        # from ``name``: a long name plus a suffix would exceed the file system's limit.
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".landing-", suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, directory / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

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
