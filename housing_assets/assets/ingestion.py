import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, asset

from housing_assets.plots import markdown_table
from housing_assets.redaction import redact_url
from housing_assets.resources.source import HousingSource


@asset(group_name="data", compute_kind="pandas")
def raw_housing(context: AssetExecutionContext, housing_source: HousingSource) -> pd.DataFrame:
    """The raw California Housing rows: the base dataset from HOUSING_SOURCE_URL plus every
    accepted landing batch, validated, exact duplicates removed, each row tagged with its batch.

    A malformed source fails the step with a message naming the file and the problem; the last
    good materialization stays in place.
    """
    loaded = housing_source.load()
    frame = loaded.frame
    missing = frame.isna().sum().rename_axis("column").reset_index(name="missing")
    context.add_output_metadata(
        {
            "rows": len(frame),
            "columns": len(frame.columns),
            "source_url": redact_url(loaded.base.url),
            "sha256": loaded.base.sha256,
            "size_bytes": loaded.base.size_bytes,
            "batches": len(loaded.lineage) - 1,
            "lineage": markdown_table(loaded.lineage),
            "missing_values": int(missing["missing"].sum()),
            "missing_by_column": markdown_table(missing[missing["missing"] > 0]),
            "ocean_proximity": MetadataValue.json(
                {str(k): int(v) for k, v in frame["ocean_proximity"].value_counts().items()}
            ),
            "summary": MetadataValue.md(frame.describe().T.round(2).to_markdown()),
            "preview": MetadataValue.md(frame.head(5).to_markdown(index=False)),
        }
    )
    return frame
