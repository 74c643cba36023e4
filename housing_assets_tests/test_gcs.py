"""Google Cloud Storage, against a real local GCS server (gcp-storage-emulator)."""

import json
import os
import subprocess
import sys
import time

import pandas as pd
import pytest
from dagster import build_init_resource_context, build_input_context, build_output_context

from housing_assets.io.gcs import GCSError, gcs_resource, list_keys, storage_client
from housing_assets.io.source import SourceError, fetch
from housing_assets.ml.parsing import parse_payload
from housing_assets.resources.io_managers import CorruptAssetError, GCSDatasetIOManager
from housing_assets_testkit import REPO_ROOT

REAL_SHA256 = "d4cd501af90475f09b814c7447c7701f59bf28e8cf1180205ae5ace9737a0109"


def _manager(bucket: str, **kwargs) -> GCSDatasetIOManager:
    manager = GCSDatasetIOManager(
        gcs=gcs_resource(), bucket=bucket, prefix="team/housing", **kwargs
    )
    manager.setup_for_execution(build_init_resource_context())
    return manager


def test_io_manager_lays_assets_out_by_key(gcs_bucket):
    manager = _manager(gcs_bucket)
    frame = pd.DataFrame({"x": [1.5, None], "c": ["a", "b"]}, index=[10, 4])
    manager.handle_output(build_output_context(asset_key="raw_housing"), frame)
    keys = list_keys(f"gs://{gcs_bucket}/team/housing/")
    manifest = json.loads(
        storage_client()
        .bucket(gcs_bucket)
        .blob("team/housing/raw_housing/manifest.json")
        .download_as_bytes()
    )
    assert sorted(keys) == [
        "team/housing/raw_housing/manifest.json",
        f"team/housing/raw_housing/versions/{manifest['version']}/data.parquet",
    ]
    loaded = manager.load_input(build_input_context(asset_key="raw_housing"))
    pd.testing.assert_frame_equal(loaded, frame)


def test_an_object_that_is_not_parquet_is_named(gcs_bucket):
    manager = _manager(gcs_bucket)
    manager.handle_output(build_output_context(asset_key="t"), pd.DataFrame({"a": [1]}))
    bucket = storage_client().bucket(gcs_bucket)
    manifest = json.loads(bucket.blob("team/housing/t/manifest.json").download_as_bytes())
    part = f"team/housing/t/versions/{manifest['version']}/data.parquet"
    bucket.blob(part).upload_from_string(b"no")
    manifest["parts"]["data.parquet"] = {  # a manifest that agrees: the Parquet check speaks
        "bytes": 2,
        "sha256": "9390298f3fb0c5b160498935d79cb139aef28e1c47358b4bbba61862b9c26e59",
    }
    bucket.blob("team/housing/t/manifest.json").upload_from_string(json.dumps(manifest))
    with pytest.raises(
        CorruptAssetError,
        match=rf"gs://{gcs_bucket}/team/housing/t/data\.parquet: not a readable Parquet",
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
    assert manifest["kind"] == "pickle" and manifest["parts"]["object.pkl"]["bytes"] > 0


def _imports_in_a_fresh_process(env: dict) -> dict:
    """Which GCS modules loading the code location imports, and its resources' types (the code
    location holds them wrapped, fixed by the deployment; resource_values() is what it wraps)."""
    code = (
        "import json, sys; import housing_assets.definitions; "
        "loaded = 'dagster_gcp' in sys.modules; "
        "from housing_assets.resources import resource_values; "
        "r = resource_values(); print(json.dumps({'dagster_gcp': loaded, "
        "'gcs': type(r.get('gcs')).__module__ + '.' + type(r.get('gcs')).__name__, "
        "'io': type(r['io_manager']).__name__, "
        "'source_gcs_is_the_gcs_resource': r['housing_source'].gcs is r.get('gcs')}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_dagster_gcp_serves_every_gcs_path_and_only_when_configured(isolated_env, gcs_server):
    local = _imports_in_a_fresh_process(isolated_env)
    assert local["dagster_gcp"] is False and local["io"] == "LocalDatasetIOManager"
    gcs = _imports_in_a_fresh_process(
        {**isolated_env, "HOUSING_GCS_BUCKET": "b", "STORAGE_EMULATOR_HOST": gcs_server}
    )
    assert gcs["dagster_gcp"] is True and gcs["io"] == "GCSDatasetIOManager"
    assert gcs["gcs"] == "dagster_gcp.gcs.resources.GCSResource"
    assert gcs["source_gcs_is_the_gcs_resource"] is True


def test_deployment_compute_logs_go_to_the_bucket(gcs_bucket, tmp_path, monkeypatch):
    """deploy/compute-logs-gcs.yaml (what the deployment's instance gets when a bucket is set):
    dagster-gcp's compute log manager uploads a step's stdout to the bucket."""
    from dagster import DagsterInstance, asset, materialize

    monkeypatch.setenv("HOUSING_GCS_BUCKET", gcs_bucket)
    monkeypatch.setenv("HOUSING_GCS_COMPUTE_LOG_PREFIX", "housing_assets/compute_logs")
    section = (REPO_ROOT / "deploy" / "compute-logs-gcs.yaml").read_text()
    section = section.replace("/tmp/dagster-compute-logs", str(tmp_path / "staging"))
    (tmp_path / "dagster.yaml").write_text(section + "\ntelemetry:\n  enabled: false\n")

    @asset
    def chatty() -> int:
        print("hello from a step")
        return 1

    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.compute_log_manager).__name__ == "GCSComputeLogManager"
        assert materialize([chatty], instance=instance).success
    logs = [k for k in list_keys(f"gs://{gcs_bucket}/housing_assets/compute_logs/")]
    stdout = [k for k in logs if k.endswith(".out")]
    assert stdout, logs
    blob = storage_client().bucket(gcs_bucket).blob(stdout[0])
    assert b"hello from a step" in blob.download_as_bytes()


def test_a_crash_between_parts_leaves_the_old_version_in_gcs(gcs_bucket, monkeypatch):
    from housing_assets_tests.test_io_manager import (
        check_a_crash_between_parts_leaves_the_old_version,
    )

    check_a_crash_between_parts_leaves_the_old_version(_manager(gcs_bucket), monkeypatch)
