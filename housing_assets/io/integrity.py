"""Model files checked before they are loaded: a digest recorded on the registered version, compared
with the files fetched from the artifact store before anything in them is unpickled.

The digest of a model folder is the sha256 of its manifest, one line per file in the folder (and
its subfolders; not ``registered_model_meta``, which MLflow adds when it loads a version), sorted
by relative path, in ``sha256sum``'s format::

    <sha256 of the file>  <relative/path/with/slashes>\\n

so ``(cd model && find . -type f | sed 's|^\\./||' | LC_ALL=C sort | xargs sha256sum | sha256sum)``
gives the same value. Two model-version tags hold it in the registry:

- ``model_sha256``: the digest (64 hex digits): what the check compares;
- ``model_files_sha256``: the manifest as JSON ``{path: sha256}``, used only to name the first
  file that differs when the digest does not match.

The registry is trusted, the artifact store is not: a changed, added or removed file in the
store is refused. Record a digest from the folder that was logged, or right after logging it.
For a version registered before digests existed, after checking its files by other means::

    python -m housing_assets.io.integrity record --version 3 [--model housing_price_model]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DIGEST_TAG = "model_sha256"
FILES_TAG = "model_files_sha256"
# Written into the model folder by MLflow itself when a version is loaded through a models:/ URI
# (into the store's own folder for a local file store): not part of the digest, and removed from
# a checked folder before loading, so that a copy planted in the store has no effect either.
ADDED_BY_MLFLOW = frozenset({"registered_model_meta"})
_CHUNK = 1 << 20


class ModelIntegrityError(RuntimeError):
    """The files of a model version are not the ones its digest was recorded for."""


class MissingDigestError(ModelIntegrityError):
    """The version has no recorded digest, so its files cannot be checked."""


def model_digest(local_dir: str | os.PathLike) -> dict[str, Any]:
    """``{"sha256": <digest of the manifest>, "files": {relative path: sha256}}`` of every file
    under ``local_dir`` (paths with "/", sorted). A symbolic link is refused: a model folder as
    MLflow writes it has none, and one could point at anything."""
    root = Path(local_dir)
    if not root.is_dir():
        raise ModelIntegrityError(f"{root} is not a model folder")
    files: dict[str, str] = {}
    for folder, subfolders, names in os.walk(root):
        for name in [*names, *subfolders]:
            path = Path(folder, name)
            if path.is_symlink():
                raise ModelIntegrityError(
                    f"{path.relative_to(root).as_posix()}: a symbolic link in a model folder"
                )
        for name in names:
            path = Path(folder, name)
            relative = path.relative_to(root).as_posix()
            if relative not in ADDED_BY_MLFLOW:
                files[relative] = _file_sha256(path)
    files = dict(sorted(files.items()))
    return {"sha256": manifest_sha256(files), "files": files}


def manifest_sha256(files: dict[str, str]) -> str:
    """The digest of a manifest ``{relative path: sha256}`` (see the module's docstring)."""
    text = "".join(f"{digest}  {path}\n" for path, digest in sorted(files.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def record_model_digest(
    client: Any, name: str, version: str | int, local_dir: str | os.PathLike | None = None
) -> str:
    """Tag version ``version`` of registered model ``name`` with the digest of its files and
    return the digest. The files are those of ``local_dir`` (the folder that was logged) or, if
    it is None, the version's artifacts as the store holds them now (fetched to a temporary
    folder: use this right after logging the model, or for a version checked by other means)."""
    version = str(version)
    if local_dir is None:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="model-digest-") as tmp:
            return record_model_digest(
                client, name, version, download_model_version(client, name, version, tmp)
            )
    digest = model_digest(local_dir)
    client.set_model_version_tag(
        name, version, FILES_TAG, json.dumps(digest["files"], separators=(",", ":"))
    )
    client.set_model_version_tag(name, version, DIGEST_TAG, digest["sha256"])
    return digest["sha256"]


def download_model_version(
    client: Any, name: str, version: str | int, dst_dir: str | os.PathLike
) -> Path:
    """The version's artifacts (the model folder) fetched into ``dst_dir``, as they are in the
    store; nothing in them is loaded."""
    from mlflow.artifacts import download_artifacts

    uri = client.get_model_version_download_uri(name, str(version))
    local = download_artifacts(
        artifact_uri=uri, dst_path=str(dst_dir), tracking_uri=client.tracking_uri
    )
    return Path(local)


def expected_digest(client: Any, name: str, version: str | int) -> str | None:
    """The digest recorded on the version (None if there is none); a malformed tag is an error."""
    tags = client.get_model_version(name, str(version)).tags or {}
    recorded = tags.get(DIGEST_TAG)
    if recorded is None:
        return None
    recorded = recorded.strip().lower()
    if len(recorded) != 64 or any(c not in "0123456789abcdef" for c in recorded):
        raise ModelIntegrityError(
            f"{name} version {version}: tag {DIGEST_TAG!r} is not a sha256 digest (64 hex digits)"
        )
    return recorded


def verify_model_version(
    client: Any,
    name: str,
    version: str | int,
    dst_dir: str | os.PathLike,
    allow_missing: bool = False,
) -> Path:
    """Fetch version ``version`` of ``name`` into ``dst_dir``, check its files against the
    digest recorded on the version and return the local model folder (load the model from it,
    not from the store again). :class:`ModelIntegrityError` names the version and the first
    file that differs; :class:`MissingDigestError` if no digest is recorded, unless
    ``allow_missing`` (a version registered before digests existed: loaded unchecked)."""
    version = str(version)
    expected = expected_digest(client, name, version)
    if expected is None and not allow_missing:
        raise MissingDigestError(
            f"{name} version {version} has no {DIGEST_TAG!r} tag: its files cannot be checked, "
            "so it is not loaded. A version registered before digests were recorded can be "
            "tagged, once its files are known to be good, with `python -m "
            f"housing_assets.io.integrity record --model {name} --version {version}`"
        )
    local = download_model_version(client, name, version, dst_dir)
    for added in ADDED_BY_MLFLOW:
        (local / added).unlink(missing_ok=True)
    if expected is None:
        log.warning(
            "%s version %s has no %r tag: loaded without checking its files",
            name,
            version,
            DIGEST_TAG,
        )
        return local
    actual = model_digest(local)
    if actual["sha256"] != expected:
        raise ModelIntegrityError(
            f"{name} version {version}: its files do not match the recorded digest "
            f"({DIGEST_TAG} {expected[:12]}…, fetched {actual['sha256'][:12]}…): "
            f"{_first_difference(client, name, version, expected, actual['files'])}; "
            "the model is not loaded"
        )
    return local


def _first_difference(client: Any, name: str, version: str, expected: str, files: dict) -> str:
    raw = (client.get_model_version(name, version).tags or {}).get(FILES_TAG)
    try:
        recorded = json.loads(raw) if raw else None
        if not isinstance(recorded, dict) or manifest_sha256(recorded) != expected:
            recorded = None  # absent, or not the manifest the digest was made from
    except (ValueError, TypeError, AttributeError):
        recorded = None
    if recorded is None:
        return f"no usable {FILES_TAG!r} tag names the file"
    for path in sorted(set(recorded) | set(files)):
        if path not in files:
            return f"first difference: {path} is missing"
        if path not in recorded:
            return f"first difference: {path} was added"
        if recorded[path] != files[path]:
            return f"first difference: {path} was changed"
    return "the files match their manifest"  # not reached: the digests differ


def main(argv: list[str] | None = None) -> int:
    """``python -m housing_assets.io.integrity {record,verify} --version N``"""
    import tempfile

    from housing_assets import settings
    from housing_assets.io.redaction import redact_url
    from housing_assets.io.registry import MODEL_NAME

    parser = argparse.ArgumentParser(
        prog="python -m housing_assets.io.integrity",
        description="Record or check the digest of a registered model version's files.",
    )
    parser.add_argument("action", choices=["record", "verify"])
    parser.add_argument("--model", default=MODEL_NAME)
    parser.add_argument("--version", required=True)
    args = parser.parse_args(argv)

    from mlflow import MlflowClient

    uri = settings.mlflow_tracking_uri()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    where = f"{args.model} version {args.version} in {redact_url(uri)}"
    try:
        if args.action == "record":
            print(f"{where}: {DIGEST_TAG} {record_model_digest(client, args.model, args.version)}")
        else:
            with tempfile.TemporaryDirectory(prefix="model-verify-") as tmp:
                verify_model_version(client, args.model, args.version, tmp)
            print(f"{where}: files match {DIGEST_TAG}")
    except ModelIntegrityError as exc:
        print(f"integrity: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
