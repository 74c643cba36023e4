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
    version = json.loads((tmp_path / "frame" / "manifest.json").read_text())["version"]
    assert (tmp_path / "frame" / "versions" / version / "data.parquet").is_file()

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
    version = json.loads((tmp_path / "frame" / "manifest.json").read_text())["version"]
    part = tmp_path / "frame" / "versions" / version / "data.parquet"
    part.write_bytes(b"garbage")
    with pytest.raises(CorruptAssetError, match=rf"{version}/data\.parquet: 7 bytes that do not"):
        manager.load_input(build_input_context(asset_key="frame"))
    part.unlink()
    with pytest.raises(CorruptAssetError, match=r"data\.parquet: listed in the manifest but miss"):
        manager.load_input(build_input_context(asset_key="frame"))


class InterruptedWrite(RuntimeError):
    pass


def _interrupt_after_first_part(monkeypatch, manager_class):
    """Make the next asset write die after its first part (a crash between parts)."""
    write = manager_class._write
    calls = []

    def crashing(self, location, name, data):
        calls.append(name)
        if len(calls) == 2:
            raise InterruptedWrite(f"simulated crash before {name}")
        return write(self, location, name, data)

    monkeypatch.setattr(manager_class, "_write", crashing)
    return lambda: monkeypatch.setattr(manager_class, "_write", write)


def check_a_crash_between_parts_leaves_the_old_version(manager, monkeypatch):
    old = Bundle(pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"a": [3]}), "old")
    _roundtrip(manager, "split", old)
    restore = _interrupt_after_first_part(monkeypatch, type(manager))
    new = Bundle(pd.DataFrame({"a": [9, 9, 9]}), pd.DataFrame({"a": [8]}), "new")
    with pytest.raises(InterruptedWrite):
        manager.handle_output(build_output_context(asset_key="split"), new)
    restore()
    loaded = manager.load_input(build_input_context(asset_key="split"))
    assert loaded.note == "old"  # the old version, whole: never a new part with an old one
    pd.testing.assert_frame_equal(loaded.train, old.train)
    pd.testing.assert_frame_equal(loaded.test, old.test)
    assert _roundtrip(manager, "split", new).note == "new"  # the next write goes through
    for _ in range(3):  # versions before the previous one are removed
        _roundtrip(manager, "split", new)


def test_a_crash_between_parts_leaves_the_old_version(tmp_path, monkeypatch):
    manager = LocalDatasetIOManager(base_dir=str(tmp_path))
    check_a_crash_between_parts_leaves_the_old_version(manager, monkeypatch)
    kept = sorted(p.name for p in (tmp_path / "split" / "versions").iterdir())
    manifest = json.loads((tmp_path / "split" / "manifest.json").read_text())
    assert kept[-2:] == sorted([manifest["version"], manifest["previous_version"]])
    assert len(kept) <= 3  # the two current ones, plus at most the crashed write's leftovers


@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MB filesystem (tmpfs): writes on it run out of space."""
    import os
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (.ci/run runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_names_the_file_and_keeps_the_previous_version(small_disk):
    import numpy as np

    manager = LocalDatasetIOManager(base_dir=str(small_disk))
    small = pd.DataFrame({"a": np.arange(1_000.0)})
    _roundtrip(manager, "frame", small)
    versions = small_disk / "frame" / "versions"
    before = sorted(p.name for p in versions.iterdir())
    # ~4 MB of random doubles (Parquet cannot shrink them) into a 2 MB filesystem
    large = pd.DataFrame({"a": np.random.default_rng(0).random(500_000)})
    with pytest.raises(OSError, match="No space left on device") as raised:
        manager.handle_output(build_output_context(asset_key="frame"), large)
    message = str(raised.value)
    assert str(small_disk / "frame" / "versions") in message and "bytes free there" in message
    assert "previous version is kept" in message
    # the half-written version and its temporary file are gone; readers get the old version
    assert sorted(p.name for p in versions.iterdir()) == before
    assert not [p for p in small_disk.rglob(".*") if p.is_file()]
    loaded = manager.load_input(build_input_context(asset_key="frame"))
    pd.testing.assert_frame_equal(loaded, small)
