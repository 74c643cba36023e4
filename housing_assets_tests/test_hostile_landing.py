"""Hostile landing batches and sources, against the real sensor on a real folder: one bad file
never stops the others, corrupt archives never pass, links are never followed, and nothing a
file holds is echoed into a reason or a log."""

from __future__ import annotations

import gzip
import io
import json
import os
import time

import pandas as pd
import pytest
from dagster import RunRequest

from housing_assets.io.source import fetch
from housing_assets.ml.parsing import parse_payload
from housing_assets.ml.schema import DataValidationError
from housing_assets_tests.test_sensor_and_rollback import _evaluate


def broken_deflate(csv: bytes) -> bytes:
    """A .csv.gz whose header is fine and whose deflate stream is not (zlib.error)."""
    good = gzip.compress(csv)
    return good[:10] + bytes([0xFF]) * 12 + good[22:]


def test_a_corrupt_batch_is_quarantined_and_the_good_one_beside_it_accepted(tmp_path, raw_frame):
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "a-broken.csv.gz").write_bytes(
        broken_deflate(raw_frame.iloc[:50].to_csv(index=False).encode())
    )
    raw_frame.iloc[50:90].to_csv(landing / "b-good.csv", index=False)

    result, cursor = _evaluate(landing)
    assert isinstance(result, RunRequest)
    assert result.tags["housing/batches"] == "b-good.csv"
    reason = (landing / "quarantine" / "a-broken.csv.gz.reason.txt").read_text()
    assert reason.startswith("a-broken.csv.gz: corrupt archive")
    assert json.loads(cursor)["requested"] == ["b-good.csv"]


@pytest.mark.parametrize("position", [1_000, 50_000, 120_000, 200_000, 300_000, 400_000])
def test_a_flipped_bit_in_the_real_archive_never_passes(housing_tgz, position):
    """The whole gzip stream is decompressed, so its CRC-32 catches what deflate does not."""
    payload = bytearray(housing_tgz.read_bytes())
    payload[position] ^= 0x01
    with pytest.raises(DataValidationError, match=r"^housing\.tgz: corrupt archive"):
        parse_payload(bytes(payload), "housing.tgz")


def test_a_corrupt_source_is_named(tmp_path, raw_frame):
    source = tmp_path / "housing.csv.gz"
    source.write_bytes(broken_deflate(raw_frame.to_csv(index=False).encode()))
    with pytest.raises(DataValidationError, match=rf"^{source}: corrupt archive"):
        parse_payload(fetch(str(source)).payload, str(source))


def test_links_and_special_files_are_never_followed(tmp_path, raw_frame):
    landing = tmp_path / "landing"
    landing.mkdir()
    outside = tmp_path / "outside.csv"
    raw_frame.iloc[:30].to_csv(outside, index=False)
    secret = tmp_path / "secrets.csv"
    secret.write_text("API_TOKEN=hunter2-do-not-print\n")
    os.symlink(outside, landing / "linked.csv")
    os.symlink(secret, landing / "secret.csv")
    os.mkfifo(landing / "pipe.csv")
    (landing / "folder.csv").mkdir()

    result, _ = _evaluate(landing)
    assert not isinstance(result, RunRequest)
    assert not (landing / "accepted").exists() or not any((landing / "accepted").iterdir())
    assert outside.is_file() and (landing / "linked.csv").is_symlink()
    for reason in (landing / "quarantine").glob("*.reason.txt"):
        assert "hunter2" not in reason.read_text()


def test_reasons_name_the_column_and_row_not_the_value(tmp_path, raw_frame):
    frame = raw_frame.iloc[:20].copy()
    frame["median_income"] = frame["median_income"].astype(object)
    frame.loc[7, "median_income"] = "password=hunter2"
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    with pytest.raises(DataValidationError) as error:
        parse_payload(buffer.getvalue().encode(), "leaky.csv")
    message = str(error.value)
    assert "column 'median_income' must be numeric" in message and "data row 8" in message
    assert "hunter2" not in message


def test_an_unreachable_gcs_landing_fails_the_tick_clearly_and_in_time(monkeypatch):
    """Dagster gives a sensor tick 60 s: a gs:// landing zone whose server does not answer must
    fail well inside that, with a message naming the location."""
    from housing_assets.io.gcs import GCSError

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")  # nothing listens there
    start = time.monotonic()
    with pytest.raises(
        GCSError,
        match=r"gs://landing-bucket/incoming/\S*: listing failed after retrying for up to 20 s",
    ):
        _evaluate("gs://landing-bucket/incoming")
    assert time.monotonic() - start < 45


def test_resent_rows_are_duplicates_and_new_rows_decide_the_run(tmp_path, raw_frame, housing_tgz):
    landing = tmp_path / "landing"
    landing.mkdir()
    new_rows = raw_frame.iloc[:30].assign(housing_median_age=lambda f: f.housing_median_age + 0.5)
    raw_frame.iloc[100:160].to_csv(landing / "a-base-rows.csv", index=False)
    raw_frame.iloc[100:160].to_csv(landing / "b-base-rows.csv.gz", index=False, compression="gzip")
    pd.concat([raw_frame.iloc[200:220], new_rows]).to_csv(landing / "c-mixed.csv", index=False)

    result, cursor = _evaluate(landing, source=housing_tgz)
    assert isinstance(result, RunRequest)
    assert result.tags["housing/batches"] == "c-mixed.csv"
    for name in ("a-base-rows.csv", "b-base-rows.csv.gz"):
        reason = (landing / "quarantine" / f"{name}.reason.txt").read_text()
        assert reason.startswith(f"{name}: all 60 rows are already in the data")

    # The same new rows again, in another file and order: nothing new, no second run.
    new_rows.iloc[::-1].to_csv(landing / "d-same-new-rows.csv", index=False)
    again, _ = _evaluate(landing, cursor, source=housing_tgz)
    assert not isinstance(again, RunRequest)
    reason = (landing / "quarantine" / "d-same-new-rows.csv.reason.txt").read_text()
    assert "all 30 rows are already in the data" in reason


def test_the_run_key_names_the_new_rows_not_the_file(tmp_path, raw_frame, housing_tgz):
    new_rows = raw_frame.iloc[:25].assign(population=lambda f: f.population + 1)
    keys = []
    for name, extra in (("x.csv", raw_frame.iloc[300:310]), ("y.csv", raw_frame.iloc[400:405])):
        landing = tmp_path / name
        landing.mkdir()
        pd.concat([extra, new_rows]).to_csv(landing / name, index=False)
        result, _ = _evaluate(landing, source=housing_tgz)
        keys.append(result.run_key)
    assert keys[0] == keys[1]  # different files, same new rows


def test_a_file_is_taken_only_when_finished(tmp_path, raw_frame):
    """A file still being written (fresh, never renamed) waits for the settle time; a file
    renamed into place after writing is taken at once; a quiet one after the settle time."""
    landing = tmp_path / "landing"
    landing.mkdir()
    writer = open(landing / "slow.csv", "w")  # noqa: SIM115 (a writer that is not done)
    writer.write(raw_frame.iloc[:150].to_csv(index=False))
    writer.flush()
    raw_frame.iloc[150:200].to_csv(landing / ".fast.csv.partial", index=False)
    time.sleep(0.05)
    os.rename(landing / ".fast.csv.partial", landing / "fast.csv")

    result, cursor = _evaluate(landing, settle_s=60)
    assert isinstance(result, RunRequest) and result.tags["housing/batches"] == "fast.csv"
    assert (landing / "slow.csv").is_file()  # not read half-way

    writer.write(raw_frame.iloc[150:300].to_csv(index=False, header=False))
    writer.close()
    quiet = time.time() - 61
    os.utime(landing / "slow.csv", (quiet, quiet))  # no write for longer than the settle time
    result, _ = _evaluate(landing, cursor, settle_s=60)
    assert isinstance(result, RunRequest) and result.tags["housing/batches"] == "slow.csv"
    accepted = pd.read_csv(landing / "accepted" / "slow.csv")
    assert len(accepted) == 300  # every row the writer wrote


def test_a_file_that_changes_while_being_moved_is_left_whole(tmp_path, raw_frame, monkeypatch):
    """The writer appends between the sensor's read and its removal of the original: the
    original stays (with everything written), the partial copy is undone, nothing is lost."""
    from housing_assets.io.landing import LocalLanding

    landing = tmp_path / "landing"
    landing.mkdir()
    raw_frame.iloc[:100].to_csv(landing / "growing.csv", index=False)
    write = LocalLanding.write

    def write_while_the_writer_appends(self, name, data, folder):
        with open(landing / "growing.csv", "a") as handle:
            handle.write(raw_frame.iloc[100:200].to_csv(index=False, header=False))
        return write(self, name, data, folder)

    monkeypatch.setattr(LocalLanding, "write", write_while_the_writer_appends)
    result, _ = _evaluate(landing)
    assert not isinstance(result, RunRequest)
    assert len(pd.read_csv(landing / "growing.csv")) == 200
    assert not any((landing / "accepted").iterdir())
