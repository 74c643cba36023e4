import gzip
import io
import tarfile

import numpy as np
import pandas as pd
import pytest

from housing_assets.io.source import SourceError, fetch
from housing_assets.ml.parsing import parse_payload
from housing_assets.ml.schema import RAW_COLUMNS, DataValidationError, validate_raw

REAL_SHA256 = "d4cd501af90475f09b814c7447c7701f59bf28e8cf1180205ae5ace9737a0109"


def _tgz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_download_over_http_matches_the_real_file(http_server):
    fetched = fetch(f"{http_server}/housing.tgz")
    assert fetched.sha256 == REAL_SHA256
    frame = parse_payload(fetched.payload, fetched.url)
    report = validate_raw(frame, fetched.url)
    assert report.rows == 20_640
    assert report.missing["total_bedrooms"] == 207
    assert sum(report.missing.values()) == 207
    assert report.categories["ISLAND"] == 5
    assert list(frame.columns) == RAW_COLUMNS


def test_http_404_fails_at_once_naming_the_url(http_server):
    with pytest.raises(SourceError, match=r"nope\.tgz: HTTP 404"):
        fetch(f"{http_server}/nope.tgz", retries=3)


def test_unreachable_server_is_retried_then_named():
    with pytest.raises(SourceError, match=r"127\.0\.0\.1:9/x\.csv: could not be read after 2"):
        fetch("http://127.0.0.1:9/x.csv", retries=2, timeout_s=1)


def test_file_url_plain_path_csv_and_csv_gz(tmp_path, raw_frame):
    csv_bytes = raw_frame.head(50).to_csv(index=False).encode()
    (tmp_path / "a.csv").write_bytes(csv_bytes)
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress(csv_bytes))
    plain = parse_payload(fetch(str(tmp_path / "a.csv")).payload, "a.csv")
    gz = parse_payload(fetch(f"file://{tmp_path / 'a.csv.gz'}").payload, "a.csv.gz")
    pd.testing.assert_frame_equal(plain, gz)
    assert len(plain) == 50
    with pytest.raises(SourceError, match="no such file"):
        fetch(str(tmp_path / "missing.csv"))


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.drop(columns=["households"]), r"missing columns \['households'\]"),
        (lambda f: f.assign(extra=1), r"unexpected columns \['extra'\]"),
        (
            lambda f: f.assign(median_income=["abc"] + [1.0] * (len(f) - 1)),
            r"column 'median_income' must be numeric",
        ),
        (
            lambda f: f.assign(latitude=[99.0] + list(f["latitude"].iloc[1:])),
            r"column 'latitude' has 1 value\(s\) outside",
        ),
        (lambda f: f.assign(median_house_value=np.nan), r"'median_house_value' has \d+ missing"),
        (lambda f: f.iloc[0:0], r"no rows"),
    ],
)
def test_malformed_data_names_the_file_and_problem(raw_frame, mutate, message):
    bad = mutate(raw_frame.head(30).copy())
    with pytest.raises(DataValidationError, match=rf"^batch\.csv: .*{message}"):
        frame = parse_payload(_csv(bad), "batch.csv")
        validate_raw(frame, "batch.csv")


def test_corrupt_archive_empty_file_and_non_utf8_are_named():
    with pytest.raises(DataValidationError, match=r"^x\.tgz: corrupt archive"):
        parse_payload(b"this is not gzip", "x.tgz")
    with pytest.raises(DataValidationError, match=r"^x\.csv: the file is empty"):
        parse_payload(b"", "x.csv")
    with pytest.raises(DataValidationError, match=r"^x\.csv: not UTF-8"):
        parse_payload(b"longitude\n\xff\xfe\xfa", "x.csv")
    with pytest.raises(DataValidationError, match=r"exactly one \.csv member"):
        parse_payload(_tgz({"a.csv": b"a\n1", "b.csv": b"b\n2"}), "two.tgz")
    with pytest.raises(DataValidationError, match="unsupported file type"):
        parse_payload(b"a,b", "data.xlsx")
