"""IO managers that store each asset as a folder a person can browse.

``<base>/<asset key>/`` holds a ``manifest.json`` and, under ``versions/<version>/``, the parts: a
DataFrame as ``data.parquet``; a dataclass bundle (e.g. the train/test split) with each DataFrame
field as ``<field>.parquet`` and the remaining fields pickled in ``object.pkl``; any other Python
object (a fitted estimator) as ``object.pkl``. One base class does the (de)serialisation;
subclasses only move bytes, locally or to Google Cloud Storage.

Writes are atomic per asset version: a new version's parts go to a folder of their own, and the
manifest (one object, replaced atomically) is switched last, naming the version and each part's
size and sha256. A reader sees the old version or the new one, never a mix; a part that does not
match its manifest is an error naming it. The previous version is kept (a reader that has just
read the old manifest still finds its parts); older ones are removed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pickle
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
from dagster import ConfigurableIOManager, ConfigurableResource, InputContext, OutputContext
from pydantic import PrivateAttr

MANIFEST = "manifest.json"
VERSIONS = "versions"


class AssetNotFoundError(FileNotFoundError):
    pass


class CorruptAssetError(ValueError):
    pass


def _frame_to_parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, engine="pyarrow")
    return buffer.getvalue()


def _frame_from_parquet(data: bytes, where: str) -> pd.DataFrame:
    try:
        return pd.read_parquet(io.BytesIO(data), engine="pyarrow")
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise CorruptAssetError(f"{where}: not a readable Parquet object ({exc})") from exc


def serialize(value: Any) -> tuple[dict, dict[str, bytes]]:
    """Value -> (manifest, {part name: bytes})."""
    if isinstance(value, pd.DataFrame):
        return {"kind": "dataframe"}, {"data.parquet": _frame_to_parquet(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        frames = {
            f.name: getattr(value, f.name)
            for f in dataclasses.fields(value)
            if isinstance(getattr(value, f.name), pd.DataFrame)
        }
        rest = dataclasses.replace(value, **{name: None for name in frames})
        parts = {f"{name}.parquet": _frame_to_parquet(frame) for name, frame in frames.items()}
        parts["object.pkl"] = pickle.dumps(rest, protocol=pickle.HIGHEST_PROTOCOL)
        return {"kind": "dataclass", "frames": sorted(frames)}, parts
    return {"kind": "pickle"}, {"object.pkl": pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)}


class DatasetIOManager(ConfigurableIOManager):
    """Base class: (de)serialisation and layout; subclasses implement the four byte operations."""

    def _location(self, key_path: list[str]) -> str:
        raise NotImplementedError

    def _write(self, location: str, name: str, data: bytes) -> None:
        raise NotImplementedError

    def _read(self, location: str, name: str) -> bytes:
        raise NotImplementedError

    def _exists(self, location: str, name: str) -> bool:
        raise NotImplementedError

    def _remove_prefix(self, location: str, prefix: str) -> None:
        """Remove every part under ``location/prefix`` (an old version); best effort."""
        raise NotImplementedError

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        if obj is None:
            return
        location = self._location(list(context.asset_key.path))
        manifest, parts = serialize(obj)
        previous = self._manifest(location)
        # Names sort in write order (microseconds, not seconds: two writes in one second must
        # not sort by their random suffix); the suffix keeps concurrent writers apart.
        seconds, nanoseconds = divmod(time.time_ns(), 10**9)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(seconds)) + f".{nanoseconds // 1000:06d}"
        version = f"{stamp}-{uuid.uuid4().hex[:8]}"
        try:
            for name, data in parts.items():
                self._write(location, f"{VERSIONS}/{version}/{name}", data)
        except BaseException:  # a full disk, a lost bucket: the manifest still names the old one
            self._remove_prefix(location, f"{VERSIONS}/{version}")
            raise
        manifest["version"] = version
        manifest["previous_version"] = previous.get("version") if previous else None
        manifest["parts"] = {
            name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            for name, data in parts.items()
        }
        self._write(location, MANIFEST, json.dumps(manifest, indent=2).encode())  # the switch
        if previous and previous.get("previous_version"):
            self._remove_prefix(location, f"{VERSIONS}/{previous['previous_version']}")
        context.add_output_metadata(
            {
                "storage_location": location,
                "storage_version": version,
                "stored_bytes": sum(p["bytes"] for p in manifest["parts"].values()),
            }
        )

    def _manifest(self, location: str) -> dict | None:
        if not self._exists(location, MANIFEST):
            return None
        return json.loads(self._read(location, MANIFEST))

    def _part(self, location: str, manifest: dict, name: str) -> bytes:
        """One part of the manifest's version, checked against the size and sha256 it lists."""
        path = f"{VERSIONS}/{manifest['version']}/{name}"
        where = f"{location}/{path}"
        try:
            data = self._read(location, path)
        except FileNotFoundError as exc:
            raise CorruptAssetError(f"{where}: listed in the manifest but missing") from exc
        expected = manifest["parts"][name]
        if len(data) != expected["bytes"] or hashlib.sha256(data).hexdigest() != expected["sha256"]:
            raise CorruptAssetError(
                f"{where}: {len(data):,} bytes that do not match the manifest "
                f"({expected['bytes']:,} bytes, sha256 {expected['sha256'][:12]}…)"
            )
        return data

    def load_input(self, context: InputContext) -> Any:
        return self.load(list(context.asset_key.path))

    def load(self, key_path: list[str]) -> Any:
        location = self._location(key_path)
        manifest = self._manifest(location)
        if manifest is None:
            raise AssetNotFoundError(
                f"asset '{'/'.join(key_path)}' has not been materialized yet: nothing at "
                f"{location} (materialize it, or its upstream assets, first)"
            )

        def frame(name: str) -> pd.DataFrame:
            return _frame_from_parquet(self._part(location, manifest, name), f"{location}/{name}")

        kind = manifest["kind"]
        if kind == "dataframe":
            return frame("data.parquet")
        value = pickle.loads(self._part(location, manifest, "object.pkl"))
        if kind == "dataclass":
            frames = {name: frame(f"{name}.parquet") for name in manifest["frames"]}
            value = dataclasses.replace(value, **frames)
        return value


class LocalDatasetIOManager(DatasetIOManager):
    """Assets as folders under ``base_dir`` on local disk (the default)."""

    base_dir: str

    def _location(self, key_path: list[str]) -> str:
        return str(Path(self.base_dir, *key_path))

    def _write(self, location: str, name: str, data: bytes) -> None:
        path = Path(location, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())  # on disk before the manifest can name it
            os.replace(tmp, path)  # atomic: readers see the old or the new file, never half
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            free = shutil.disk_usage(path.parent).free
            raise OSError(
                exc.errno,
                f"could not write {path} ({len(data):,} bytes; {free:,} bytes free there): "
                f"{exc.strerror}; the asset's previous version is kept",
            ) from exc

    def _read(self, location: str, name: str) -> bytes:
        return Path(location, name).read_bytes()

    def _exists(self, location: str, name: str) -> bool:
        return Path(location, name).is_file()

    def _remove_prefix(self, location: str, prefix: str) -> None:
        shutil.rmtree(Path(location, prefix), ignore_errors=True)


class GCSDatasetIOManager(DatasetIOManager):
    """Assets as objects under ``gs://bucket/prefix/<asset key>/`` in Google Cloud Storage,
    through ``gcs``, dagster-gcp's ``GCSResource`` (the project and credentials, configured
    once for the IO manager, the landing zone and the dataset source).

    The bucket is checked when a run starts, so a missing bucket or missing credentials fail
    the run before any step executes. Calls retry with backoff for at most ``retry_deadline_s``.
    """

    gcs: ConfigurableResource  # dagster_gcp.GCSResource, imported only where GCS is configured
    bucket: str
    prefix: str = "housing_assets"
    retry_deadline_s: float = 60.0
    _client: Any = PrivateAttr(default=None)

    def setup_for_execution(self, context) -> None:
        from housing_assets.io.gcs import ensure_bucket

        ensure_bucket(self._gcs_client(), self.bucket, self.retry_deadline_s)

    def _gcs_client(self):
        from housing_assets.io.gcs import storage_client

        if self._client is None:
            self._client = storage_client(self.gcs)
        return self._client

    def _location(self, key_path: list[str]) -> str:
        return "/".join([f"gs://{self.bucket}", *filter(None, self.prefix.split("/")), *key_path])

    def _write(self, location: str, name: str, data: bytes) -> None:
        from housing_assets.io.gcs import write_bytes

        write_bytes(f"{location}/{name}", data, self.retry_deadline_s, self._gcs_client())

    def _read(self, location: str, name: str) -> bytes:
        from housing_assets.io.gcs import read_bytes

        return read_bytes(f"{location}/{name}", self.retry_deadline_s, self._gcs_client())

    def _remove_prefix(self, location: str, prefix: str) -> None:
        from housing_assets.io.gcs import list_keys, split_gs_url

        bucket, _ = split_gs_url(location)
        client = self._gcs_client()
        for key in list_keys(f"{location}/{prefix}/", self.retry_deadline_s, client):
            client.bucket(bucket).blob(key).delete(timeout=self.retry_deadline_s)

    def _exists(self, location: str, name: str) -> bool:
        from housing_assets.io.gcs import call, retry_policy, split_gs_url

        bucket, key = split_gs_url(f"{location}/{name}")
        blob = self._gcs_client().bucket(bucket).blob(key)
        return call(
            "checking the object",
            f"{location}/{name}",
            lambda: blob.exists(
                retry=retry_policy(self.retry_deadline_s), timeout=self.retry_deadline_s
            ),
            self.retry_deadline_s,
        )
