import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, asset

from housing_assets.plots import markdown_table
from housing_assets.resources.source import HousingSource


@asset(group_name="data", compute_kind="pandas")
def raw_housing(context: AssetExecutionContext, housing_source: HousingSource) -> pd.DataFrame:
    """The raw California Housing rows, downloaded from HOUSING_SOURCE_URL and validated.

    A malformed source fails the step with a message naming the file and the problem; the last
    good materialization stays in place.
    """
    fetched, frame, report = housing_source.load()
    missing = pd.DataFrame(
        {"column": list(report.missing), "missing": list(report.missing.values())}
    )
    context.add_output_metadata(
        {
            "rows": report.rows,
            "columns": len(frame.columns),
            "source_url": fetched.url,
            "sha256": fetched.sha256,
            "size_bytes": fetched.size_bytes,
            "missing_values": int(missing["missing"].sum()),
            "missing_by_column": markdown_table(missing[missing["missing"] > 0]),
            "ocean_proximity": MetadataValue.json(report.categories),
            "summary": MetadataValue.md(frame.describe().T.round(2).to_markdown()),
            "preview": MetadataValue.md(frame.head(5).to_markdown(index=False)),
        }
    )
    return frame
