from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from dagster import ConfigurableResource

from housing_assets.landing import Landing, open_landing
from housing_assets.ml.batches import combine_batches
from housing_assets.ml.schema import ValidationReport, validate_raw
from housing_assets.ml.source import FetchedSource, fetch, parse_payload


@dataclass(frozen=True)
class LoadedHousing:
    base: FetchedSource
    frame: pd.DataFrame  # base rows + accepted batches, duplicates removed, `batch` column
    report: ValidationReport  # of the base dataset
    lineage: pd.DataFrame  # one row per batch: name, sha256, rows, duplicates, rows added


class HousingSource(ConfigurableResource):
    """Where ``raw_housing`` reads: the base dataset (``HOUSING_SOURCE_URL``) plus every batch
    the retraining sensor accepted into the landing zone (``HOUSING_LANDING_URL``/accepted)."""

    url: str
    landing_url: str | None = None
    retries: int = 3
    timeout_s: float = 30.0
    # A file in a landing folder counts as finished after this long without a write (or at
    # once when it was renamed into place): see housing_assets/landing.py.
    landing_settle_s: float = 10.0
    # dagster-gcp's GCSResource for gs:// locations (the `gcs` resource; None without GCS).
    gcs: ConfigurableResource | None = None

    def landing(self) -> Landing:
        if not self.landing_url:
            raise ValueError("no landing zone configured (HOUSING_LANDING_URL)")
        return open_landing(self.landing_url, self.gcs, self.landing_settle_s)

    def load(self) -> LoadedHousing:
        fetched = fetch(self.url, retries=self.retries, timeout_s=self.timeout_s, gcs=self.gcs)
        base = parse_payload(fetched.payload, self.url)
        report = validate_raw(base, self.url)
        batches, shas = [], {"base": fetched.sha256}
        if self.landing_url:
            for batch in self.landing().accepted():
                frame = parse_payload(batch.payload, batch.url)
                validate_raw(frame, batch.url)
                batches.append((batch.name, frame))
                shas[batch.name] = batch.sha256
        combined, lineage = combine_batches(base, batches)
        lineage.insert(1, "sha256", lineage["batch"].map(shas))
        return LoadedHousing(fetched, combined, report, lineage)
