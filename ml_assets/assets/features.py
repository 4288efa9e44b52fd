"""Model-ready features: cleaned trips with what is known when a trip starts, and the target."""

import dagster as dg
import polars as pl

from ml_assets.assets.metadata import table_metadata
from ml_assets.lib.features import CleaningRules, build_trip_features, cleaning_summary
from ml_assets.partitions import daily_partitions


@dg.asset(
    group_name="features",
    partitions_def=daily_partitions,
    kinds={"polars", "parquet"},
    code_version="1",
    owners=["team:ml-platform"],
    tags={"domain": "nyc_taxi", "stage": "features"},
)
def trip_features(
    context: dg.AssetExecutionContext, raw_trips: dict[str, pl.DataFrame], taxi_zones: pl.DataFrame
) -> dg.MaterializeResult:
    """The day's trips, cleaned and turned into features.

    Kept: durations of 1 to 60 minutes, distances from 0 to 100 miles, zone IDs 1..265.
    Features: pickup and drop-off zone and their pair (`PU_DO`), trip distance, hour of day,
    ISO day of week, pickup and drop-off borough. Target: `duration_min`.
    """
    rules = CleaningRules()
    features_by_day: dict[str, pl.DataFrame] = {}
    raw_rows = 0
    for key in context.partition_keys:
        trips = raw_trips[key]
        raw_rows += trips.height
        features_by_day[key] = build_trip_features(trips.lazy(), taxi_zones.lazy(), rules).collect()
    every_row = pl.concat(features_by_day.values())
    value = features_by_day if len(features_by_day) > 1 else every_row
    summary = cleaning_summary(raw_rows, every_row.height)
    context.log.info(
        f"kept {summary['kept_rows']} of {summary['raw_rows']} trips "
        f"({summary['dropped_share']:.1%} dropped by cleaning)"
    )
    return dg.MaterializeResult(
        value=value,
        metadata={
            **table_metadata(every_row),
            **{f"cleaning/{name}": number for name, number in summary.items()},
            "mean_duration_min": float(every_row["duration_min"].mean() or 0.0),
        },
    )
