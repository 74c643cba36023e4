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


def _names_in(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_names_too_long_to_extend_block_nothing(tmp_path, raw_frame):
    """Names of 245 ASCII characters and 254 UTF-8 bytes (the file system allows 255): no
    temporary or sidecar name is derived by appending to them, so nothing fails with errno 36;
    they are stored under shortened names and the good batch beside them gets its run."""
    landing = tmp_path / "landing"
    landing.mkdir()
    long_good = "g" * 241 + ".csv"
    long_bad = "é" * 125 + ".csv"  # 254 bytes
    raw_frame.iloc[:40].to_csv(landing / long_good, index=False)
    raw_frame.iloc[40:80].drop(columns=["households"]).to_csv(landing / long_bad, index=False)
    raw_frame.iloc[80:120].to_csv(landing / "b-good.csv", index=False)

    result, cursor = _evaluate(landing)
    assert isinstance(result, RunRequest)
    batches = result.tags["housing/batches"].split(",")
    assert "b-good.csv" in batches and len(batches) == 2
    (stored_good,) = [b for b in batches if b != "b-good.csv"]
    assert stored_good.startswith("g" * 150) and stored_good.endswith(".csv")
    assert _names_in(landing / "accepted") == sorted(batches)
    quarantined = _names_in(landing / "quarantine")
    assert len(quarantined) == 2 and quarantined[1] == quarantined[0] + ".reason.txt"
    reason = (landing / "quarantine" / quarantined[1]).read_text()
    assert "missing columns ['households']" in reason and "chars" in reason  # the name, capped
    for folder in ("accepted", "quarantine"):
        assert all(len(os.fsencode(n)) <= 255 for n in _names_in(landing / folder))
    assert [p for p in landing.iterdir() if p.is_file()] == []  # nothing left behind
    assert not any(n.endswith(".partial") for n in _names_in(landing / "accepted"))
    assert not isinstance(_evaluate(landing, cursor)[0], RunRequest)


def test_control_characters_in_names_never_reach_the_log(tmp_path, raw_frame, capsys):
    """A newline in a name must not write a fake line into the log, nor a terminal escape or
    an undecodable byte reach it raw: logs and reasons show names escaped; the stored names
    carry no control characters (nor commas: the run tag lists names with commas)."""
    landing = tmp_path / "landing"
    landing.mkdir()
    forged = "x\n2026-01-01 00:00:00 +0000 - dagster - ERROR - all models deleted.csv"
    raw_frame.iloc[:40].to_csv(landing / forged, index=False)
    raw_frame.iloc[40:80].to_csv(landing / "\x1b[2Jred,blue.csv", index=False)
    with open(os.path.join(os.fsencode(landing), b"latin-\xe9\xff.csv"), "wb") as handle:
        handle.write(b"not,a,valid\nbatch,at,all\n")

    result, _ = _evaluate(landing)
    log = capsys.readouterr().err
    assert isinstance(result, RunRequest)
    assert not any(line.startswith("2026-01-01") for line in log.splitlines())
    assert "x\\n2026-01-01 00:00:00" in log  # the newline shown escaped
    assert "\x1b" not in log and "\\x1b[2Jred,blue.csv" in log
    assert "latin-\\xe9\\xff.csv" in log
    stored = result.tags["housing/batches"].split(",")
    assert sorted(stored) == sorted(
        [
            "x_2026-01-01 00:00:00 +0000 - dagster - ERROR - all models deleted.csv",
            "_[2Jred_blue.csv",
        ]
    )
    assert _names_in(landing / "accepted") == sorted(stored)
    (reason_file,) = [n for n in _names_in(landing / "quarantine") if n.endswith(".reason.txt")]
    reason = (landing / "quarantine" / reason_file).read_text()
    assert reason.startswith("latin-\\xe9\\xff.csv: ") and reason.count("\n") == 1


def _bomb(path, inflated_mb: int) -> None:
    """A .csv.gz of one valid row repeated: a few hundred kB that inflate to ``inflated_mb``."""
    row = b"-122.23,37.88,41.0,880.0,129.0,322.0,126.0,8.3252,452600.0,NEAR BAY\n"
    block = row * (1_000_000 // len(row))
    with gzip.open(path, "wb", compresslevel=6) as handle:
        handle.write(
            b"longitude,latitude,housing_median_age,total_rooms,total_bedrooms,population,"
            b"households,median_income,median_house_value,ocean_proximity\n"
        )
        for _ in range(inflated_mb):
            handle.write(block)


def test_a_decompression_bomb_is_quarantined_without_being_inflated(tmp_path, raw_frame):
    """200 MB behind a small .csv.gz: quarantined for the decompressed-size limit (default
    50 MB), having been inflated only up to it; the good batch beside it gets its run."""
    import tracemalloc

    from housing_assets.defs.sensors import batch_limits

    landing = tmp_path / "landing"
    landing.mkdir()
    _bomb(landing / "a-bomb.csv.gz", 200)
    assert (landing / "a-bomb.csv.gz").stat().st_size < 2_000_000
    raw_frame.iloc[:40].to_csv(landing / "b-good.csv", index=False)

    tracemalloc.start()
    try:
        with pytest.raises(DataValidationError, match="more than 50,000,000 bytes"):
            parse_payload((landing / "a-bomb.csv.gz").read_bytes(), "a-bomb.csv.gz", batch_limits())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 120_000_000  # the limit and a copy at most, never the 200 MB

    result, _ = _evaluate(landing)
    assert isinstance(result, RunRequest) and result.tags["housing/batches"] == "b-good.csv"
    reason = (landing / "quarantine" / "a-bomb.csv.gz.reason.txt").read_text()
    assert reason.startswith("a-bomb.csv.gz: more than 50,000,000 bytes of data once decompressed")


def test_size_and_row_limits_are_settings(tmp_path, raw_frame, monkeypatch):
    from housing_assets.defs.sensors import batch_limits
    from housing_assets.ml.parsing import ParseLimits

    assert batch_limits({}) == ParseLimits(max_bytes=50_000_000, max_rows=100_000)
    assert batch_limits({"HOUSING_BATCH_MAX_MB": "0.5", "HOUSING_BATCH_MAX_ROWS": "7"}) == (
        ParseLimits(max_bytes=500_000, max_rows=7)
    )
    with pytest.raises(ValueError, match="HOUSING_BATCH_MAX_ROWS='many' is not a number"):
        batch_limits({"HOUSING_BATCH_MAX_ROWS": "many"})

    landing = tmp_path / "landing"
    landing.mkdir()
    monkeypatch.setenv("HOUSING_BATCH_MAX_ROWS", "100")
    monkeypatch.setenv("HOUSING_BATCH_MAX_MB", "1")
    raw_frame.iloc[:150].to_csv(landing / "a-long.csv", index=False)
    _bomb(landing / "b-big.csv.gz", 3)
    raw_frame.iloc[200:300].to_csv(landing / "c-good.csv", index=False)  # exactly the limit
    result, _ = _evaluate(landing)
    assert isinstance(result, RunRequest) and result.tags["housing/batches"] == "c-good.csv"
    quarantine = landing / "quarantine"
    assert "more than 100 data rows" in (quarantine / "a-long.csv.reason.txt").read_text()
    assert "more than 1,000,000 bytes" in (quarantine / "b-big.csv.gz.reason.txt").read_text()


def test_rows_repeated_within_a_batch_count_once(tmp_path, raw_frame, housing_tgz, capsys):
    """A batch of 30 new rows, each 40 times, adds 30 rows (the run key is that of the 30 rows
    sent once); a batch of base rows repeated adds none."""
    new_rows = raw_frame.iloc[:30].assign(population=lambda f: f.population + 3)
    landing = tmp_path / "landing"
    landing.mkdir()
    pd.concat([new_rows] * 40).to_csv(landing / "a-repeated.csv", index=False)
    pd.concat([raw_frame.iloc[500:510]] * 25).to_csv(landing / "b-base.csv", index=False)
    result, _ = _evaluate(landing, source=housing_tgz)
    assert isinstance(result, RunRequest) and result.tags["housing/batches"] == "a-repeated.csv"
    assert "30 new of 30 rows (1170 more repeated within the file, counted once)" in (
        capsys.readouterr().err
    )
    reason = (landing / "quarantine" / "b-base.csv.reason.txt").read_text()
    assert reason.startswith("b-base.csv: all 10 rows (240 more repeated within the file")

    once = tmp_path / "once"
    once.mkdir()
    new_rows.to_csv(once / "c.csv", index=False)
    assert _evaluate(once, source=housing_tgz)[0].run_key == result.run_key


def test_a_file_that_cannot_be_moved_holds_back_nothing(tmp_path, raw_frame, capsys):
    """Its destination is blocked (a folder of that name in quarantine/): it stays in place,
    the error is logged, and the good batch beside it is accepted with its run."""
    landing = tmp_path / "landing"
    (landing / "quarantine" / "a-bad.csv").mkdir(parents=True)
    raw_frame.iloc[:20].drop(columns=["latitude"]).to_csv(landing / "a-bad.csv", index=False)
    raw_frame.iloc[20:60].to_csv(landing / "b-good.csv", index=False)

    result, cursor = _evaluate(landing)
    assert isinstance(result, RunRequest) and result.tags["housing/batches"] == "b-good.csv"
    assert (landing / "a-bad.csv").is_file()
    assert "a-bad.csv: could not be handled (IsADirectoryError" in capsys.readouterr().err
    assert _names_in(landing / "quarantine") == ["a-bad.csv"]  # no temporary file left

    (landing / "quarantine" / "a-bad.csv").rmdir()  # unblocked: quarantined at the next tick
    assert not isinstance(_evaluate(landing, cursor)[0], RunRequest)
    assert (landing / "quarantine" / "a-bad.csv.reason.txt").is_file()
