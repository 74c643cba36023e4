from __future__ import annotations

from dagster import ConfigurableResource

from housing_assets.io.landing import Batch, Landing, open_landing
from housing_assets.io.source import FetchedSource, fetch


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

    def fetch(self) -> tuple[FetchedSource, list[Batch]]:
        """The base dataset's bytes and every accepted batch's (``steps.assemble_raw`` makes
        rows of them)."""
        base = fetch(self.url, retries=self.retries, timeout_s=self.timeout_s, gcs=self.gcs)
        batches = list(self.landing().accepted()) if self.landing_url else []
        return base, batches
