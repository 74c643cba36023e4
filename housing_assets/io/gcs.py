"""Google Cloud Storage access shared by the IO manager, the dataset source and the landing zone.

Every failure users meet is turned into a :class:`GCSError` that names the bucket and object:
a missing bucket, missing credentials, an unreachable server (after bounded retries).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

CREDENTIALS_HINT = (
    "set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, or run "
    "`gcloud auth application-default login`; for a local GCS server set STORAGE_EMULATOR_HOST"
)


class GCSError(RuntimeError):
    """A GCS operation failed; the message names the bucket/object and the reason."""


class GCSObjectNotFoundError(GCSError, FileNotFoundError):
    """The bucket exists, the object does not."""


def split_gs_url(url: str) -> tuple[str, str]:
    """``gs://bucket/some/key`` -> ``("bucket", "some/key")``."""
    if not url.startswith("gs://"):
        raise ValueError(f"{url}: not a gs:// URL")
    bucket, _, key = url[len("gs://") :].partition("/")
    if not bucket:
        raise ValueError(f"{url}: no bucket name")
    return bucket, key


def gcs_resource(project: str | None = None):
    """dagster-gcp's ``GCSResource`` for this environment: ``project``, else GOOGLE_CLOUD_PROJECT
    (a local GCS server needs none). Imports dagster_gcp, so only GCS code paths call it."""
    from dagster_gcp import GCSResource

    from housing_assets import settings

    return GCSResource(project=project or settings.load().gcp_project)


def storage_client(gcs=None):
    """The google-cloud-storage client of a dagster-gcp ``GCSResource`` (``gcs``, else
    :func:`gcs_resource`); anonymous against a local server (STORAGE_EMULATOR_HOST)."""
    from google.auth.exceptions import DefaultCredentialsError

    try:
        return (gcs or gcs_resource()).get_client()
    except DefaultCredentialsError as exc:
        raise GCSError(f"no Google Cloud credentials found: {CREDENTIALS_HINT} ({exc})") from exc


def retry_policy(deadline_s: float):
    """google-cloud-storage's own retry (exponential backoff), bounded to ``deadline_s``."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_deadline(deadline_s).with_delay(initial=0.2, maximum=5.0)


def call(what: str, where: str, fn: Callable[[], T], deadline_s: float) -> T:
    """Run one GCS call and translate its failures into a :class:`GCSError` naming ``where``."""
    from google.api_core import exceptions as gexc
    from google.auth.exceptions import DefaultCredentialsError, RefreshError

    try:
        return fn()
    except gexc.NotFound as exc:
        raise GCSError(f"{where}: not found ({what}): {exc.message}") from exc
    except gexc.Forbidden as exc:
        raise GCSError(f"{where}: permission denied ({what}): {exc.message}") from exc
    except (DefaultCredentialsError, RefreshError) as exc:
        raise GCSError(f"{where}: no usable Google Cloud credentials: {CREDENTIALS_HINT}") from exc
    except (gexc.RetryError, gexc.GoogleAPICallError, OSError) as exc:
        endpoint = _endpoint()
        raise GCSError(
            f"{where}: {what} failed after retrying for up to {deadline_s:g} s "
            f"(server {endpoint}): {exc}"
        ) from exc
    except Exception as exc:  # requests' connection errors and timeouts
        if type(exc).__module__.startswith(("requests", "urllib3", "google")):
            endpoint = _endpoint()
            raise GCSError(
                f"{where}: {what} failed after retrying for up to {deadline_s:g} s "
                f"(server {endpoint} unreachable?): {exc}"
            ) from exc
        raise


def _endpoint() -> str:
    from housing_assets import settings

    return settings.load().storage_emulator_host or "storage.googleapis.com"


def ensure_bucket(client, bucket_name: str, deadline_s: float) -> None:
    """Fail early, before anything is read or written, if the bucket is not there."""
    bucket = client.bucket(bucket_name)
    exists = call(
        "checking the bucket",
        f"gs://{bucket_name}",
        lambda: bucket.exists(retry=retry_policy(deadline_s), timeout=deadline_s),
        deadline_s,
    )
    if not exists:
        raise GCSError(
            f"gs://{bucket_name}: bucket does not exist (create it, or fix HOUSING_GCS_BUCKET)"
        )


def read_bytes(url: str, deadline_s: float = 60.0, client=None) -> bytes:
    """Download one object; a missing object and a missing bucket get distinct messages."""
    bucket_name, key = split_gs_url(url)
    client = client or storage_client()
    blob = client.bucket(bucket_name).blob(key)
    if not call(
        "checking the object",
        url,
        lambda: blob.exists(retry=retry_policy(deadline_s), timeout=deadline_s),
        deadline_s,
    ):
        ensure_bucket(client, bucket_name, deadline_s)
        raise GCSObjectNotFoundError(f"{url}: no such object in bucket '{bucket_name}'")
    return call(
        "download",
        url,
        lambda: blob.download_as_bytes(retry=retry_policy(deadline_s), timeout=deadline_s),
        deadline_s,
    )


def write_bytes(url: str, data: bytes, deadline_s: float = 60.0, client=None) -> None:
    bucket_name, key = split_gs_url(url)
    client = client or storage_client()
    blob = client.bucket(bucket_name).blob(key)
    call(
        "upload",
        url,
        lambda: blob.upload_from_string(data, retry=retry_policy(deadline_s), timeout=deadline_s),
        deadline_s,
    )


def list_keys(url_prefix: str, deadline_s: float = 60.0, client=None) -> list[str]:
    bucket_name, prefix = split_gs_url(url_prefix)
    client = client or storage_client()
    return call(
        "listing",
        url_prefix,
        lambda: [
            b.name
            for b in client.list_blobs(
                bucket_name, prefix=prefix, retry=retry_policy(deadline_s), timeout=deadline_s
            )
        ],
        deadline_s,
    )
