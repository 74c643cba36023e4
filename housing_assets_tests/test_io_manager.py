import json
from dataclasses import dataclass

import pandas as pd
import pytest
from dagster import build_input_context, build_output_context

from housing_assets.resources.io_managers import (
    AssetNotFoundError,
    CorruptAssetError,
    LocalDatasetIOManager,
)


@dataclass
class Bundle:
    train: pd.DataFrame
    test: pd.DataFrame
    note: str


def _roundtrip(manager, key, value):
    manager.handle_output(build_output_context(asset_key=key), value)
    return manager.load_input(build_input_context(asset_key=key))


def test_dataframes_dataclasses_and_objects_roundtrip(tmp_path):
    manager = LocalDatasetIOManager(base_dir=str(tmp_path))
    frame = pd.DataFrame({"a": [1.0, None], "b": ["x", "y"]}, index=[7, 3])
    pd.testing.assert_frame_equal(_roundtrip(manager, "frame", frame), frame)
    assert (tmp_path / "frame" / "data.parquet").is_file()

    bundle = _roundtrip(manager, "bundle", Bundle(frame, frame.head(1), "hello"))
    pd.testing.assert_frame_equal(bundle.test, frame.head(1))
    assert bundle.note == "hello"
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["frames"] == ["test", "train"]
    assert {"train.parquet", "test.parquet", "object.pkl"} <= set(manifest["parts"])

    assert _roundtrip(manager, "obj", {"k": [1, 2]}) == {"k": [1, 2]}


def test_missing_and_corrupt_assets_are_named(tmp_path):
    manager = LocalDatasetIOManager(base_dir=str(tmp_path))
    with pytest.raises(AssetNotFoundError, match="asset 'nothing' has not been materialized"):
        manager.load_input(build_input_context(asset_key="nothing"))
    _roundtrip(manager, "frame", pd.DataFrame({"a": [1]}))
    (tmp_path / "frame" / "data.parquet").write_bytes(b"garbage")
    with pytest.raises(CorruptAssetError, match=r"frame/data\.parquet: not a readable Parquet"):
        manager.load_input(build_input_context(asset_key="frame"))
