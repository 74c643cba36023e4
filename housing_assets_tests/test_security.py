"""Attacks on the model server and the model registry, played against the real parts: a real
MLflow sqlite store, `housing-serve` as its own process on 127.0.0.1, real HTTP requests.

- every request format MLflow accepts gets the same row checks, or is refused;
- malformed bodies get 400 (never 500), one log line each, no traceback anywhere;
- a model whose files in the artifact store were replaced is never unpickled: refused at start,
  and when the champion alias moves to it the server keeps the version it has.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import pickle
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

from housing_assets.io.integrity import (
    DIGEST_TAG,
    FILES_TAG,
    MissingDigestError,
    ModelIntegrityError,
    model_digest,
    record_model_digest,
    verify_model_version,
)
from housing_assets.ml.schema import CATEGORICAL_FEATURE, FEATURE_COLUMNS, NUMERIC_FEATURES
from housing_assets_testkit import background_server, free_port, make_synthetic_housing, wait_for

pytestmark = pytest.mark.security

NAME = "housing_price_model"
SERVE = str(Path(sys.executable).parent / "housing-serve")
JSON = "application/json"


def send(base: str, body: bytes, content_type: str | None = JSON, path="/invocations"):
    """POST ``body`` as it is (http.client adds no Content-Type of its own); (status, headers,
    parsed JSON body or raw text)."""
    url = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    headers = {"Content-Type": content_type} if content_type is not None else {}
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = raw.decode(errors="replace")
    return response.status, dict(response.getheaders()), parsed


def post_json(base: str, payload) -> tuple[int, dict, object]:
    return send(base, json.dumps(payload).encode())


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return {**env, "MLFLOW_DISABLE_TELEMETRY": "true", **extra}


# --- a small model on the nine housing features, served ----------------------------------------


@pytest.fixture(scope="module")
def housing_server(tmp_path_factory):
    """A scikit-learn pipeline on the nine raw housing columns (signature and input example as
    the project registers them), in a real MLflow sqlite store with its digest recorded, served
    by `housing-serve`. Yields (base URL, log path, rows, the model's own predictions)."""
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    tmp = tmp_path_factory.mktemp("served")
    uri = f"sqlite:///{tmp}/mlflow.db"
    frame = make_synthetic_housing(400)
    X, y = frame[FEATURE_COLUMNS], frame["median_house_value"]
    model = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("num", SimpleImputer(), NUMERIC_FEATURES),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), [CATEGORICAL_FEATURE]),
                    ]
                ),
            ),
            ("reg", LinearRegression()),
        ]
    ).fit(X, y)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("MLFLOW_REGISTRY_URI", uri)
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        try:
            exp = mlflow.create_experiment("s", artifact_location=(tmp / "art").as_uri())
            example = X.dropna().head(5)
            with mlflow.start_run(experiment_id=exp):
                mlflow.sklearn.log_model(
                    model,
                    name="model",
                    signature=infer_signature(example, model.predict(example)),
                    input_example=example,
                    registered_model_name=NAME,
                    pip_requirements=["scikit-learn"],
                    serialization_format="cloudpickle",
                )
            client = mlflow.MlflowClient(uri, uri)
            client.set_registered_model_alias(NAME, "champion", "1")
            record_model_digest(client, NAME, "1")
        finally:
            _forget_mlflow_uris()
    rows = X.head(20).reset_index(drop=True).copy()
    rows.loc[0, "total_bedrooms"] = np.nan
    rows.loc[1, CATEGORICAL_FEATURE] = "FLOATING CITY"
    expected = model.predict(rows)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp / "serve.log"
    env = server_env(MLFLOW_TRACKING_URI=uri)
    with background_server([SERVE, "--port", str(port)], f"{base}/ping", env=env, log_path=log):
        yield base, log, rows, expected


def _forget_mlflow_uris() -> None:
    """MLflow keeps the URIs in module globals: no later test may read this store."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    registry_utils._registry_uri = None
    tracking_utils._tracking_uri = None


def records_of(rows) -> list[dict]:
    return json.loads(rows.to_json(orient="records"))  # NaN -> null


def bodies_in_every_format(rows) -> list[tuple[str, bytes, str]]:
    """(name, body, content type) of the same rows in each format MLflow's app accepts."""
    records = records_of(rows)
    columns = {c: [r[c] for r in records] for c in rows.columns}
    split = {"columns": list(rows.columns), "data": [list(r.values()) for r in records]}
    return [
        ("dataframe_records", json.dumps({"dataframe_records": records}).encode(), JSON),
        ("dataframe_split", json.dumps({"dataframe_split": split}).encode(), JSON),
        ("instances (rows)", json.dumps({"instances": records}).encode(), JSON),
        ("instances (columns)", json.dumps({"instances": columns}).encode(), JSON),
        ("inputs (columns)", json.dumps({"inputs": columns}).encode(), JSON),
        ("inputs (rows)", json.dumps({"inputs": records}).encode(), JSON),
        ("csv", rows.to_csv(index=False).encode(), "text/csv"),
        ("csv; charset", rows.to_csv(index=False).encode(), "text/csv; charset=utf-8"),
    ]


def test_every_format_answers_the_same_predictions(housing_server):
    base, _, rows, expected = housing_server
    for name, body, content_type in bodies_in_every_format(rows):
        status, headers, answer = send(base, body, content_type)
        assert status == 200, (name, answer)
        assert headers["x-model-version"] == "1"
        np.testing.assert_allclose(answer["predictions"], expected, rtol=1e-9, err_msg=name)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"latitude": 95.0}, "column 'latitude' has 1 value(s) outside [32, 42.5]"),
        ({"median_income": 1e9}, "column 'median_income' has 1 value(s) outside [0, 100]"),
        ({"longitude": None}, "column 'longitude' has 1 missing value(s)"),
        ({"households": "many"}, "column 'households' must be numeric"),
    ],
)
def test_no_format_is_a_side_door_around_the_row_checks(housing_server, change, message):
    """Latitude 95 or an income of a billion is refused whichever way the rows are sent."""
    base, _, rows, _ = housing_server
    bad = rows.head(3).copy()
    for column, value in change.items():
        bad[column] = bad[column].astype(object)
        bad.loc[2, column] = value
    for name, body, content_type in bodies_in_every_format(bad):
        status, _, answer = send(base, body, content_type)
        assert status == 400, (name, answer)
        assert message in answer["message"], (name, answer)


def test_formats_that_are_not_checked_are_refused(housing_server):
    base, _, rows, _ = housing_server
    records = records_of(rows.head(2))
    buffer = io.BytesIO()
    rows.head(2).to_parquet(buffer)
    for body, content_type in [
        (buffer.getvalue(), "application/vnd.apache.parquet"),  # binary: not read from clients
        (json.dumps({"dataframe_records": records}).encode(), "text/plain"),
        (json.dumps({"dataframe_records": records}).encode(), "application/x-www-form-urlencoded"),
        (json.dumps({"dataframe_records": records}).encode(), "application/json; charset=latin-1"),
        (json.dumps({"dataframe_records": records}).encode(), "application/json; format=pandas"),
    ]:
        status, _, answer = send(base, body, content_type)
        assert status == 415, (content_type, answer)
        assert answer["error_code"] == "BAD_REQUEST" and answer["message"], answer
    # The unified LLM formats and params are not for this model.
    for payload, message in [
        ({"messages": [{"role": "user", "content": "hi"}]}, "expected exactly one of"),
        ({"dataframe_records": records, "params": {"k": 1}}, "takes no parameters"),
        ({"dataframe_records": records, "instances": records}, "expected exactly one of"),
    ]:
        status, _, answer = post_json(base, payload)
        assert status == 400 and message in answer["message"], answer
    # POST elsewhere than /invocations reaches nothing.
    status, _, _ = send(base, json.dumps({"dataframe_records": records}).encode(), path="/ping")
    assert status == 404


def _malformed(rows) -> list[tuple[str, bytes, str | None]]:
    record = records_of(rows.head(1))[0]
    good = json.dumps({"dataframe_records": [record]})
    csv = rows.head(2).to_csv(index=False)
    header = ",".join(rows.columns)
    split = {"columns": list(rows.columns), "data": [list(record.values())]}
    return [
        ("no Content-Type", good.encode(), None),
        ("empty Content-Type", good.encode(), ""),
        ("empty body", b"", JSON),
        ("not JSON", b"{not json", JSON),
        ("nested arrays", b"[" * 200_000 + b"]" * 200_000, JSON),
        ("nested objects", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, JSON),
        ("nested cell", good.replace('"latitude":', '"latitude":' + "[" * 5000, 1).encode(), JSON),
        ("nested in records", b'{"dataframe_records": [' + b"[" * 3000 + b"]" * 3000 + b"]}", JSON),
        (
            "5,000-digit integer",
            good.replace('"households":', '"households":' + "9" * 5000 + ',"x":', 1).encode(),
            JSON,
        ),
        ("1e999", good.replace('"median_income":', '"median_income":1e999,"y":', 1).encode(), JSON),
        ("NaN literal", good.replace('"latitude":', '"latitude":NaN,"z":', 1).encode(), JSON),
        (
            "Infinity literal",
            good.replace('"latitude":', '"latitude":Infinity,"z":', 1).encode(),
            JSON,
        ),
        (
            "-Infinity literal",
            good.replace('"latitude":', '"latitude":-Infinity,"z":', 1).encode(),
            JSON,
        ),
        (
            "non-UTF-8 JSON",
            json.dumps({"dataframe_records": [record | {CATEGORICAL_FEATURE: "X"}]})
            .encode()
            .replace(b'"X"', b'"\xff\xfe"'),
            JSON,
        ),
        ("non-UTF-8 garbage", os.urandom(64) + b"\xff", JSON),
        ("UTF-8 BOM", b"\xef\xbb\xbf" + good.encode(), JSON),
        (
            "duplicate split columns",
            json.dumps({"dataframe_split": split | {"columns": ["latitude"] * 9}}).encode(),
            JSON,
        ),
        (
            "duplicate keys",
            good.replace(
                '{"dataframe_records"', '{"dataframe_records": [], "dataframe_records"'
            ).encode(),
            JSON,
        ),
        (
            "ragged split",
            json.dumps({"dataframe_split": split | {"data": [[1, 2]]}}).encode(),
            JSON,
        ),
        ("split without columns", json.dumps({"dataframe_split": {"data": [[1]]}}).encode(), JSON),
        ("split of numbers", json.dumps({"dataframe_split": 5}).encode(), JSON),
        ("records as object", json.dumps({"dataframe_records": record}).encode(), JSON),
        ("records of lists", json.dumps({"dataframe_records": [[1, 2, 3]]}).encode(), JSON),
        ("instances scalar", json.dumps({"instances": 3}).encode(), JSON),
        ("inputs of scalars", json.dumps({"inputs": record}).encode(), JSON),
        (
            "inputs ragged",
            json.dumps({"inputs": {"latitude": [1, 2], "longitude": [1]}}).encode(),
            JSON,
        ),
        ("top-level list", json.dumps([record]).encode(), JSON),
        ("top-level string", b'"dataframe_records"', JSON),
        ("no format key", b"{}", JSON),
        ("unknown key", json.dumps({"dataframe_records": [record], "x": 1}).encode(), JSON),
        (
            "bool as number",
            json.dumps({"dataframe_records": [record | {"households": True}]}).encode(),
            JSON,
        ),
        (
            "object as number",
            json.dumps({"dataframe_records": [record | {"latitude": {"a": 1}}]}).encode(),
            JSON,
        ),
        (
            "list as number",
            json.dumps({"dataframe_records": [record | {"latitude": [37.5]}]}).encode(),
            JSON,
        ),
        (
            "number as category",
            json.dumps({"dataframe_records": [record | {CATEGORICAL_FEATURE: 3}]}).encode(),
            JSON,
        ),
        ("no rows", json.dumps({"dataframe_records": []}).encode(), JSON),
        ("CSV ragged row", (csv + "1,2\n").encode(), "text/csv"),
        (
            "CSV duplicate header",
            (header.replace("longitude", "latitude") + "\n" + csv.split("\n", 1)[1]).encode(),
            "text/csv",
        ),
        ("CSV open quote", (header + '\n"-122.2,37.8\n').encode(), "text/csv"),
        ("CSV non-UTF-8", csv.encode() + b"\xff\n", "text/csv"),
        ("CSV header only", (header + "\n").encode(), "text/csv"),
        ("CSV empty", b"", "text/csv"),
        (
            "CSV text for number",
            (header + "\n-122.2,north,41,880,,322,126,8.3,NEAR BAY\n").encode(),
            "text/csv",
        ),
    ]


def test_malformed_bodies_get_400_and_one_log_line_never_a_500(housing_server):
    base, log, rows, _ = housing_server
    before = log.read_text()
    cases = _malformed(rows)
    for name, body, content_type in cases:
        status, headers, answer = send(base, body, content_type)
        assert status == 400, (name, status, answer)
        assert isinstance(answer, dict) and answer["error_code"] == "BAD_REQUEST", (name, answer)
        text = json.dumps(answer)
        for leak in ("Traceback", "stack_trace", ".py", "/tmp", "site-packages", str(log.parent)):
            assert leak not in text, (name, answer)
    time.sleep(0.5)  # the log is written by another process
    new = log.read_text()[len(before) :].splitlines()
    refusals = [line for line in new if "refused a request" in line]
    assert len(new) == len(refusals) == len(cases), "\n".join(new)
    assert "Traceback" not in log.read_text()
    # ...and the server still answers.
    status, _, answer = post_json(base, {"dataframe_records": records_of(rows.head(1))})
    assert status == 200 and len(answer["predictions"]) == 1


def test_oversized_requests_get_413(housing_server):
    base, _, rows, _ = housing_server
    record = records_of(rows.head(1))[0]
    status, _, answer = send(base, b"[" + b" " * 50_000_000 + b"]")  # 50 MB
    assert status == 413 and "larger than 5,000,000 bytes" in answer["message"]
    status, _, answer = post_json(base, {"dataframe_records": [record] * 100_000})
    assert status == 413, answer
    # Under the byte limit, over the row limit: short CSV rows.
    line = "-122.2,37.8,41,880,,322,126,8.3,NEAR BAY\n"
    body = (",".join(rows.columns) + "\n" + line * 60_000).encode()
    assert len(body) < 5_000_000
    status, _, answer = send(base, body, "text/csv")
    assert status == 413 and "more than 50,000 rows" in answer["message"], answer


# --- model files: recorded digests, checked before loading -------------------------------------


class WritesAMarker:
    """Unpickling this creates the file ``path``: a stand-in for code an attacker runs."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def tamper(client, version: str, marker: Path) -> Path:
    """Replace the version's model.pkl in the artifact store with a pickle that writes
    ``marker`` when loaded."""
    folder = Path(urllib.parse.urlparse(client.get_model_version_download_uri(NAME, version)).path)
    (folder / "model.pkl").write_bytes(pickle.dumps(WritesAMarker(marker)))
    return folder / "model.pkl"


def serve_command(port: int, *extra: str) -> list[str]:
    return [SERVE, "--port", str(port), "--poll-s", "0.5", *extra]


def test_a_tampered_champion_is_refused_at_start_and_never_unpickled(registry, tmp_path):
    client = registry[0]  # its versions' digests are recorded, as registration does
    marker = tmp_path / "attacker-was-here"
    tampered = tamper(client, "3", marker)

    started = subprocess.run(
        serve_command(free_port()), env=server_env(), capture_output=True, text=True, timeout=300
    )
    assert started.returncode == 3, started.stderr[-3000:]
    assert "refused to start" in started.stderr
    assert f"{NAME} version 3" in started.stderr and "model.pkl was changed" in started.stderr
    assert "Traceback" not in started.stderr
    assert not marker.exists()  # nothing was unpickled

    # The trap was armed: loading that file does run the attacker's code.
    pickle.loads(tampered.read_bytes()).close()
    assert marker.exists()


def test_the_champion_moving_to_a_tampered_version_keeps_the_one_served(registry, tmp_path):
    client = registry[0]  # its versions' digests are recorded, as registration does
    marker = tmp_path / "attacker-was-here"
    tamper(client, "2", marker)
    port = free_port()
    base, log = f"http://127.0.0.1:{port}", tmp_path / "serve.log"
    rows = {"dataframe_records": [{"x": 1.0}]}
    with background_server(serve_command(port), f"{base}/ping", env=server_env(), log_path=log):
        status, headers, answer = post_json(base, rows)
        assert (status, answer["predictions"], headers["x-model-version"]) == (200, [300.0], "3")

        client.set_registered_model_alias(NAME, "champion", "2")
        wait_for(lambda: "refused version 2" in log.read_text(), 60, "the refusal to be logged")
        for _ in range(5):  # several polls later: still v3, never v2
            status, headers, answer = post_json(base, rows)
            assert (status, answer["predictions"], headers["x-model-version"]) == (
                200,
                [300.0],
                "3",
            )
            time.sleep(0.3)
        assert not marker.exists()
        line = next(x for x in log.read_text().splitlines() if "refused version 2" in x)
        assert "model.pkl was changed" in line and "still serving version 3" in line
        assert log.read_text().count("refused version 2") == 1  # logged once, not every poll
        with urllib_open(f"{base}/status") as status_body:
            assert "refused version 2" in status_body["refused"] and status_body["version"] == "3"

        # The alias moves on to a version whose files are intact: it is served.
        client.set_registered_model_alias(NAME, "champion", "1")
        wait_for(
            lambda: post_json(base, rows)[1].get("x-model-version") == "1", 60, "version 1 served"
        )
    assert not marker.exists()
    assert "Traceback" not in log.read_text()


def urllib_open(url: str):
    import contextlib
    import urllib.request

    @contextlib.contextmanager
    def opened():
        with urllib.request.urlopen(url, timeout=30) as response:
            yield json.loads(response.read())

    return opened()


def forget_digests(client, versions=("1", "2", "3")) -> None:
    """As a version registered before digests were recorded."""
    for version in versions:
        for tag in (DIGEST_TAG, FILES_TAG):
            client.delete_model_version_tag(NAME, version, tag)


def test_a_version_without_a_digest_is_refused_unless_allowed(registry, tmp_path):
    forget_digests(registry[0])
    started = subprocess.run(
        serve_command(free_port()), env=server_env(), capture_output=True, text=True, timeout=300
    )
    assert started.returncode == 3, started.stderr[-3000:]
    assert f"version 3 has no '{DIGEST_TAG}' tag" in started.stderr
    assert "--allow-missing-digest" in started.stderr

    port = free_port()
    base, log = f"http://127.0.0.1:{port}", tmp_path / "serve.log"
    env = server_env(HOUSING_SERVE_ALLOW_MISSING_DIGEST="1")
    with background_server(serve_command(port), f"{base}/ping", env=env, log_path=log):
        status, headers, answer = post_json(base, {"dataframe_records": [{"x": 1.0}]})
        assert (status, answer["predictions"], headers["x-model-version"]) == (200, [300.0], "3")
    assert "without checking its files" in log.read_text()


def test_the_digest_api(registry, tmp_path):
    """model_digest, record_model_digest and verify_model_version on a real store."""
    import hashlib

    client = registry[0]
    digest = record_model_digest(client, NAME, "1")
    tags = client.get_model_version(NAME, "1").tags
    assert tags[DIGEST_TAG] == digest and len(digest) == 64
    files = json.loads(tags[FILES_TAG])
    assert "model.pkl" in files and "MLmodel" in files and list(files) == sorted(files)
    # sha256sum's format, sorted by path: checkable without this code.
    listing = "".join(f"{files[p]}  {p}\n" for p in sorted(files))
    assert hashlib.sha256(listing.encode()).hexdigest() == digest

    local = verify_model_version(client, NAME, "1", tmp_path / "ok")
    assert model_digest(local)["sha256"] == digest
    assert record_model_digest(client, NAME, "1", local) == digest  # from a folder: the same

    store = Path(urllib.parse.urlparse(client.get_model_version_download_uri(NAME, "1")).path)
    (store / "extra.py").write_text("print('hi')\n")
    with pytest.raises(ModelIntegrityError, match=r"version 1: .*extra\.py was added"):
        verify_model_version(client, NAME, "1", tmp_path / "added")
    (store / "extra.py").unlink()
    conda = (store / "conda.yaml").read_bytes()
    (store / "conda.yaml").unlink()
    with pytest.raises(ModelIntegrityError, match=r"conda\.yaml is missing"):
        verify_model_version(client, NAME, "1", tmp_path / "removed")

    # MLflow's own registered_model_meta (added to a file store's folder when a version is
    # loaded through models:/) is not part of the digest, and is removed before loading.
    (store / "conda.yaml").write_text("planted: true\n")
    with pytest.raises(ModelIntegrityError, match=r"conda\.yaml was changed"):
        verify_model_version(client, NAME, "1", tmp_path / "changed")
    (store / "conda.yaml").write_bytes(conda)
    (store / "registered_model_meta").write_text("model_name: x\nmodel_version: '9'\n")
    checked = verify_model_version(client, NAME, "1", tmp_path / "meta")
    assert (checked / "model.pkl").exists() and not (checked / "registered_model_meta").exists()

    # A manifest that does not match the digest names nothing, but the check still refuses.
    (store / "conda.yaml").unlink()
    client.set_model_version_tag(NAME, "1", FILES_TAG, json.dumps({"model.pkl": "0" * 64}))
    with pytest.raises(ModelIntegrityError, match="no usable"):
        verify_model_version(client, NAME, "1", tmp_path / "manifest")
    client.set_model_version_tag(NAME, "1", DIGEST_TAG, "not-a-digest")
    with pytest.raises(ModelIntegrityError, match="not a sha256 digest"):
        verify_model_version(client, NAME, "1", tmp_path / "malformed")
    forget_digests(client, ["2"])
    with pytest.raises(MissingDigestError, match="has no 'model_sha256' tag"):
        verify_model_version(client, NAME, "2", tmp_path / "missing")
    assert (
        verify_model_version(client, NAME, "2", tmp_path / "allowed", allow_missing=True)
        / "model.pkl"
    ).exists()

    # A symbolic link in a model folder is refused (it could point anywhere).
    folder = tmp_path / "linked"
    folder.mkdir()
    (folder / "MLmodel").write_text("x")
    (folder / "model.pkl").symlink_to("/etc/hostname")
    with pytest.raises(ModelIntegrityError, match="symbolic link"):
        model_digest(folder)
