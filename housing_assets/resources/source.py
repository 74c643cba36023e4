from __future__ import annotations

import pandas as pd
from dagster import ConfigurableResource

from housing_assets.ml.schema import ValidationReport, validate_raw
from housing_assets.ml.source import FetchedSource, fetch, parse_payload


class HousingSource(ConfigurableResource):
    """Where ``raw_housing`` reads the dataset (``HOUSING_SOURCE_URL``)."""

    url: str
    retries: int = 3
    timeout_s: float = 30.0

    def load(self) -> tuple[FetchedSource, pd.DataFrame, ValidationReport]:
        fetched = fetch(self.url, retries=self.retries, timeout_s=self.timeout_s)
        frame = parse_payload(fetched.payload, self.url)
        return fetched, frame, validate_raw(frame, self.url)
