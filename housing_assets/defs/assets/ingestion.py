import pandas as pd
from dagster import AssetExecutionContext, asset

from housing_assets.reports.steps import raw_evidence
from housing_assets.resources import HousingSource, Tracking
from housing_assets.steps import assemble_raw


@asset(group_name="data", compute_kind="pandas")
def raw_housing(
    context: AssetExecutionContext, housing_source: HousingSource, tracking: Tracking
) -> pd.DataFrame:
    """The raw California Housing rows: the base dataset from HOUSING_SOURCE_URL plus every
    accepted landing batch, validated, exact duplicates removed, each row tagged with its batch
    and its side of the evaluation split (assigned here, once).

    A malformed source fails the step with a message naming the file and the problem; the last
    good materialization stays in place.
    """
    base, batches = housing_source.fetch()
    raw = assemble_raw(base, batches)
    tracking.publish(context, raw_evidence(raw))
    return raw.frame
