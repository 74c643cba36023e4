from __future__ import annotations

from dagster import ConfigurableResource

from housing_assets.io.landing import Landing, open_landing
from housing_assets.io.source import fetch
from housing_assets.steps.raw import RawHousing, assemble_raw


class HousingSource(ConfigurableResource):
    """Where ``raw_housing`` reads: the base dataset (``HOUSING_SOURCE_URL``) plus every batch
    the retraining sensor accepted into the landing zone (``HOUSING_LANDING_URL``/accepted)."""

    url: str
    landing_url: str | None = None
    retries: int = 3
    timeout_s: float = 30.0
    # A file in a landing folder counts as finished after this long without a write (or at
    # once when it was renamed into place): see housing_assets/io/landing.py.
    landing_settle_s: float = 3.0
    # dagster-gcp's GCSResource for gs:// locations (the `gcs` resource; None without GCS).
    gcs: ConfigurableResource | None = None

    def landing(self) -> Landing:
        if not self.landing_url:
            raise ValueError("no landing zone configured (HOUSING_LANDING_URL)")
        return open_landing(self.landing_url, self.gcs, self.landing_settle_s)

    def load(self) -> RawHousing:
        """Read the base dataset and every accepted batch, then assemble them (pure step)."""
        base = fetch(self.url, retries=self.retries, timeout_s=self.timeout_s, gcs=self.gcs)
        batches = self.landing().accepted() if self.landing_url else []
        return assemble_raw(base, list(batches))
