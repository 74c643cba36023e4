"""raw_housing: the base dataset plus accepted batches, validated, de-duplicated, split once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import pandas as pd

from housing_assets.datasets import DataSource
from housing_assets.ml.batches import combine_batches
from housing_assets.ml.parsing import parse_payload
from housing_assets.ml.schema import ValidationReport, validate_raw
from housing_assets.ml.split import assign_split


class SourceFile(Protocol):
    """One file's bytes and where they came from, as housing_assets.io reads them."""

    url: str
    payload: bytes

    @property
    def sha256(self) -> str: ...


class BatchFile(SourceFile, Protocol):
    name: str


@dataclass(frozen=True)
class RawHousing:
    frame: pd.DataFrame  # base rows + accepted batches, `batch` and split columns
    report: ValidationReport  # of the base dataset
    lineage: pd.DataFrame  # one row per batch: name, sha256, rows, duplicates, rows added
    source: DataSource  # the base dataset's URL (redacted) and sha256
    source_bytes: int  # the base dataset's size as fetched


def assemble_raw(base: SourceFile, batches: Sequence[BatchFile]) -> RawHousing:
    """Parse and validate every file (errors name the file), combine them without duplicate
    rows, and assign the evaluation split once: every later step reads it from the rows.

    The frame's ``attrs["source"]`` carries the base dataset's provenance to the next step
    (Parquet keeps it)."""
    base_frame = parse_payload(base.payload, base.url)
    report = validate_raw(base_frame, base.url)
    parsed = []
    for batch in batches:
        frame = parse_payload(batch.payload, batch.url)
        validate_raw(frame, batch.url)
        parsed.append((batch.name, frame))
    combined, lineage = combine_batches(base_frame, parsed)
    source = DataSource.of(base.url, base.sha256)  # sha256 is computed on each access: once
    shas = {"base": source.sha256, **{b.name: b.sha256 for b in batches}}
    lineage.insert(1, "sha256", lineage["batch"].map(shas))
    frame = assign_split(combined)
    frame.attrs["source"] = source.as_dict()
    return RawHousing(frame, report, lineage, source, len(base.payload))
