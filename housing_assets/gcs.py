"""Small helpers shared by everything that talks to Google Cloud Storage."""

from __future__ import annotations

import os


def split_gs_url(url: str) -> tuple[str, str]:
    """``gs://bucket/some/key`` -> ``("bucket", "some/key")``."""
    if not url.startswith("gs://"):
        raise ValueError(f"{url}: not a gs:// URL")
    bucket, _, key = url[len("gs://") :].partition("/")
    if not bucket:
        raise ValueError(f"{url}: no bucket name")
    return bucket, key


def storage_client(project: str | None = None):
    """A google-cloud-storage client; anonymous when STORAGE_EMULATOR_HOST points at a local server."""
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project=project or "local", credentials=AnonymousCredentials())
    return storage.Client(project=project)
