import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, asset

from housing_assets.ml.split import SPLIT_COLUMN, SPLIT_COLUMNS
from housing_assets.reports.plots import markdown_table
from housing_assets.resources.source import HousingSource


@asset(group_name="data", compute_kind="pandas")
def raw_housing(context: AssetExecutionContext, housing_source: HousingSource) -> pd.DataFrame:
    """The raw California Housing rows: the base dataset from HOUSING_SOURCE_URL plus every
    accepted landing batch, validated, exact duplicates removed, each row tagged with its batch
    and its side of the evaluation split (assigned here, once).

    A malformed source fails the step with a message naming the file and the problem; the last
    good materialization stays in place.
    """
    raw = housing_source.load()
    frame = raw.frame
    missing = frame.isna().sum().rename_axis("column").reset_index(name="missing")
    context.add_output_metadata(
        {
            "rows": len(frame),
            "train_rows": int((frame[SPLIT_COLUMN] == "train").sum()),
            "test_rows": int((frame[SPLIT_COLUMN] == "test").sum()),
            "source_url": raw.source.url,
            "sha256": raw.source.sha256,
            "size_bytes": raw.source_bytes,
            "batches": len(raw.lineage) - 1,
            "lineage": markdown_table(raw.lineage),
            "missing_values": int(missing["missing"].sum()),
            "missing_by_column": markdown_table(missing[missing["missing"] > 0]),
            "ocean_proximity": MetadataValue.json(
                {str(k): int(v) for k, v in frame["ocean_proximity"].value_counts().items()}
            ),
            "summary": MetadataValue.md(
                frame.drop(columns=SPLIT_COLUMNS).describe().T.round(2).to_markdown()
            ),
            "preview": MetadataValue.md(frame.head(5).to_markdown(index=False)),
        }
    )
    return frame
