"""Google Cloud Storage, against a real local GCS server (gcp-storage-emulator)."""

import json
import time

import pandas as pd
import pytest
from dagster import build_init_resource_context, build_input_context, build_output_context

from housing_assets.gcs import GCSError, list_keys, storage_client
from housing_assets.ml.source import SourceError, fetch, parse_payload
from housing_assets.resources.io_managers import CorruptAssetError, GCSDatasetIOManager

REAL_SHA256 = "d4cd501af90475f09b814c7447c7701f59bf28e8cf1180205ae5ace9737a0109"


def _manager(bucket: str, **kwargs) -> GCSDatasetIOManager:
    manager = GCSDatasetIOManager(bucket=bucket, prefix="team/housing", **kwargs)
    manager.setup_for_execution(build_init_resource_context())
    return manager


def test_io_manager_lays_assets_out_by_key(gcs_bucket):
    manager = _manager(gcs_bucket)
    frame = pd.DataFrame({"x": [1.5, None], "c": ["a", "b"]}, index=[10, 4])
    manager.handle_output(build_output_context(asset_key="raw_housing"), frame)
    keys = list_keys(f"gs://{gcs_bucket}/team/housing/")
    assert sorted(keys) == [
        "team/housing/raw_housing/data.parquet",
        "team/housing/raw_housing/manifest.json",
    ]
    loaded = manager.load_input(build_input_context(asset_key="raw_housing"))
    pd.testing.assert_frame_equal(loaded, frame)


def test_an_object_that_is_not_parquet_is_named(gcs_bucket):
    manager = _manager(gcs_bucket)
    manager.handle_output(build_output_context(asset_key="t"), pd.DataFrame({"a": [1]}))
    storage_client().bucket(gcs_bucket).blob("team/housing/t/data.parquet").upload_from_string(
        b"no"
    )
    with pytest.raises(
        CorruptAssetError,
        match=rf"gs://{gcs_bucket}/team/housing/t/data\.parquet: "
        "not a readable Parquet",
    ):
        manager.load_input(build_input_context(asset_key="t"))


def test_missing_bucket_fails_before_anything_runs(gcs_server, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server)
    with pytest.raises(GCSError, match="gs://no-such-bucket: bucket does not exist"):
        _manager("no-such-bucket")


def test_unreachable_server_gives_up_after_a_bounded_retry(monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")
    start = time.perf_counter()
    with pytest.raises(
        GCSError,
        match=r"gs://some-bucket: checking the bucket failed after "
        r"retrying for up to 2 s \(server http://127\.0\.0\.1:9",
    ):
        _manager("some-bucket", retry_deadline_s=2.0)
    assert time.perf_counter() - start < 20


def test_no_credentials_is_explained(monkeypatch, tmp_path):
    # Real Google auth, with no emulator and a key file that does not exist: google-auth fails
    # at once, before any network call (NO_GCE_CHECK also keeps it off the metadata server).
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing-key.json"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    with pytest.raises(
        GCSError, match="no Google Cloud credentials found: set GOOGLE_APPLICATION_CREDENTIALS"
    ):
        storage_client()


def test_gs_source_url(gcs_bucket, housing_tgz):
    storage_client().bucket(gcs_bucket).blob("raw/housing.tgz").upload_from_filename(
        str(housing_tgz)
    )
    fetched = fetch(f"gs://{gcs_bucket}/raw/housing.tgz")
    assert fetched.sha256 == REAL_SHA256
    assert len(parse_payload(fetched.payload, fetched.url)) == 20_640
    with pytest.raises(SourceError, match=rf"gs://{gcs_bucket}/raw/nope\.tgz: no such object"):
        fetch(f"gs://{gcs_bucket}/raw/nope.tgz")
    with pytest.raises(SourceError, match=r"gs://missing-bucket: bucket does not exist"):
        fetch("gs://missing-bucket/raw/housing.tgz")


def test_manifest_lists_parts_with_sizes(gcs_bucket):
    manager = _manager(gcs_bucket)
    manager.handle_output(build_output_context(asset_key="obj"), {"a": 1})
    blob = storage_client().bucket(gcs_bucket).blob("team/housing/obj/manifest.json")
    manifest = json.loads(blob.download_as_bytes())
    assert manifest["kind"] == "pickle" and manifest["parts"]["object.pkl"] > 0
