"""Model-ready features: cleaned trips with what is known when a trip starts, and the target."""

from collections.abc import Iterable

import dagster as dg
import polars as pl

from ml_assets.assets.metadata import column_schema, table_metadata
from ml_assets.assets.partition_cache import PartitionCache, stored_cache_keys
from ml_assets.failures import PERMANENT_ERRORS, failing_without_retries
from ml_assets.lib.features import (
    FEATURE_SCHEMA,
    FEATURES_ENGINE,
    CleaningRules,
    build_trip_features,
    cleaning_summary,
    trip_features_frame,
)
from ml_assets.lib.fingerprint import fingerprint, frame_fingerprint
from ml_assets.partitions import DailyPartitioning
from ml_assets.resources.parquet_io_manager import PartitionedFileIOManager

TRIP_FEATURES_CODE_VERSION = "1"
"""Bump when the features change: every partition is rebuilt, and models downstream go stale."""


def trip_features(
    context: dg.AssetExecutionContext,
    raw_trips: dict[str, pl.LazyFrame],
    taxi_zones: pl.DataFrame,
    io_manager: dg.ResourceParam[PartitionedFileIOManager],
) -> dg.MaterializeResult:
    """The day's trips, cleaned and turned into features.

    Kept: durations of 1 to 60 minutes, distances from 0 to 100 miles, zone IDs 1..265.
    Features: pickup and drop-off zone and their pair (`PU_DO`), trip distance, hour of day,
    ISO day of week, pickup and drop-off borough. Target: `duration_min`.

    A day whose `raw_trips` partition, zone lookup, cleaning rules and code version are unchanged
    since it was last built is not rebuilt (and its raw trips are not even read): the stored file
    is kept and its materialization says `cached: true`.

    A day whose stored trips or zone lookup cannot be read or break the schema fails the step at
    once (no retry), naming the day and the file.
    """
    with failing_without_retries():
        return _build_trip_features(context, raw_trips, taxi_zones, io_manager)


def _build_trip_features(
    context: dg.AssetExecutionContext,
    raw_trips: dict[str, pl.LazyFrame],
    taxi_zones: pl.DataFrame,
    io_manager: PartitionedFileIOManager,
) -> dg.MaterializeResult:
    rules = CleaningRules()
    cache = PartitionCache.load(context, io_manager)
    raw_cache_keys = stored_cache_keys(io_manager, dg.AssetKey("raw_trips"), context.partition_keys)
    zones_version = frame_fingerprint(taxi_zones)
    outputs: dict[str, object] = {}
    to_build: dict[str, str] = {}
    for key in context.partition_keys:
        cache_key = fingerprint(
            TRIP_FEATURES_CODE_VERSION,
            repr(rules),
            zones_version,
            # A raw day stored without a stamp (written before stamps): a key that never matches.
            raw_cache_keys.get(key, context.run.run_id),
        )
        reused = cache.reuse(key, cache_key)
        if reused is not None:
            outputs[key] = reused
        else:
            to_build[key] = cache_key
    raw_rows = kept_rows = 0
    for key, (trips, features) in _built_days(raw_trips, taxi_zones, rules, to_build).items():
        raw_rows += trips.height
        kept_rows += features.height
        summary = cleaning_summary(trips.height, features.height)
        outputs[key] = cache.record_computed(
            key,
            to_build[key],
            features,
            {
                **table_metadata(features),
                **{f"cleaning/{name}": number for name, number in summary.items()},
                "mean_duration_min": float(features["duration_min"].mean() or 0.0),
            },
        )
    cache.log_summary()
    run_summary = cleaning_summary(raw_rows, kept_rows)
    if cache.computed_keys:
        context.log.info(
            f"kept {run_summary['kept_rows']} of {run_summary['raw_rows']} trips "
            f"({run_summary['dropped_share']:.1%} dropped by cleaning)"
        )
    return dg.MaterializeResult(
        value=outputs if len(outputs) > 1 else next(iter(outputs.values())),
        metadata={
            **cache.summary(),
            **{f"run/cleaning/{name}": number for name, number in run_summary.items()},
        },
    )


def _built_days(
    raw_trips: dict[str, pl.LazyFrame],
    taxi_zones: pl.DataFrame,
    rules: CleaningRules,
    days: Iterable[str],
) -> dict[str, tuple[pl.DataFrame, pl.DataFrame]]:
    """Each of `days`' raw trips and features, all read and built at once: polars runs the days
    in parallel, where one day after the other leaves a core idle on small days.

    An error that does not heal names the day it comes from: the days are built again one by one
    until one fails.
    """
    days = list(days)
    if not days:
        return {}
    try:
        trips = pl.collect_all([raw_trips[day] for day in days])
        features = pl.collect_all(
            [build_trip_features(day.lazy(), taxi_zones.lazy(), rules) for day in trips],
            engine=FEATURES_ENGINE,
        )
    except PERMANENT_ERRORS:
        for day in days:
            with failing_without_retries(where=f"partition {day}"):
                trip_features_frame(raw_trips[day], taxi_zones.lazy(), rules)
        raise
    return dict(zip(days, zip(trips, features, strict=True), strict=True))


def features_assets(days: DailyPartitioning) -> list[dg.AssetsDefinition]:
    """The daily features, partitioned by the days of `days`."""
    return [
        dg.asset(
            group_name="features",
            partitions_def=days.partitions,
            kinds={"polars", "parquet"},
            code_version=TRIP_FEATURES_CODE_VERSION,
            backfill_policy=dg.BackfillPolicy.single_run(),
            tags={"stage": "features"},
            metadata={"dagster/column_schema": column_schema(FEATURE_SCHEMA)},
        )(trip_features),
    ]
