"""Trips and zones, as they arrive from the source, in one normalized schema."""

from datetime import date

import dagster as dg

from ml_assets.assets.metadata import column_schema, table_metadata
from ml_assets.assets.partition_cache import PartitionCache
from ml_assets.config import IngestionConfig
from ml_assets.failures import failing_without_retries
from ml_assets.lib.fingerprint import fingerprint, frame_fingerprint
from ml_assets.lib.trip_schema import TRIP_SCHEMA
from ml_assets.partitions import DailyPartitioning
from ml_assets.resources.parquet_io_manager import PartitionedFileIOManager
from ml_assets.resources.trip_source import TripSource
from ml_assets.retry_policies import network_retry

INGESTION_GROUP = "ingestion"

RAW_TRIPS_CODE_VERSION = "3"
"""Bump when `raw_trips` computes different rows from the same source: every partition reruns.
3: TLC columns are found by name in any case (a file spelling `RateCodeID` keeps its rate codes)."""


def taxi_zones(trip_source: TripSource) -> dg.MaterializeResult:
    """NYC TLC taxi zones: LocationID, Borough, Zone and service zone of every pickup/drop-off ID.

    A lookup that is empty, has no rows, or repeats or garbles a LocationID fails the step at once
    (no retry), naming the file and what is wrong.
    """
    with failing_without_retries():
        zones, origin = trip_source.zones()
    return dg.MaterializeResult(
        value=zones,
        # The zones' content decides the version: downstream partitions are rebuilt only when
        # the lookup itself changed, not every time it is fetched again.
        data_version=dg.DataVersion(frame_fingerprint(zones)),
        metadata={
            **table_metadata(zones),
            "source": origin,
            "synthetic": trip_source.synthetic,
        },
    )


def raw_trips(
    context: dg.AssetExecutionContext,
    trip_source: TripSource,
    config: IngestionConfig,
    io_manager: dg.ResourceParam[PartitionedFileIOManager],
) -> dg.MaterializeResult:
    """Every trip picked up on the partition's day, in the normalized trip schema.

    Read from the month's TLC parquet file (downloaded once and cached) or from the synthetic
    sample source. Nothing is cleaned here: this is the day as the source reported it. The run
    config may pick the taxi type (green or yellow); by default it is ML_ASSETS_TAXI_TYPE.

    A date range runs as one run (single-run backfill) that reads each month file once and writes
    one file per day. A day whose source (the month file's checksum, or the sample generator's
    version) and code version are unchanged since it was last materialized is not read again: its
    stored file is kept and its materialization says `cached: true`.

    A month file is checked (readable parquet, the trip schema) before it enters the download
    cache; a cached month that fails the checks when read is dropped from the cache, so the next
    run downloads it again. `refetch_source: true` in the run config downloads the run's months
    again even if they are cached. Bad content, unpublished months and permission errors fail the
    step at once; timeouts and 5xx are retried with backoff.
    """
    with failing_without_retries():
        return _materialize_raw_trips(context, trip_source, config, io_manager)


def _materialize_raw_trips(
    context: dg.AssetExecutionContext,
    trip_source: TripSource,
    config: IngestionConfig,
    io_manager: PartitionedFileIOManager,
) -> dg.MaterializeResult:
    taxi_type = config.taxi_type_or(trip_source.taxi_type)
    cache = PartitionCache.load(context, io_manager)
    outputs: dict[str, object] = {}
    source_versions: set[str] = set()
    sources: set[str] = set()
    rows = 0
    downloaded = False
    version_of_month: dict[date, str] = {}
    for key in context.partition_keys:
        day = date.fromisoformat(key)
        month = day.replace(day=1)
        if month not in version_of_month:
            with failing_without_retries(where=f"partition {key}"):
                version_of_month[month] = trip_source.source_version_for_day(
                    day, taxi_type=taxi_type, refetch=config.refetch_source
                )
        source_version = version_of_month[month]
        source_versions.add(source_version)
        cache_key = fingerprint(RAW_TRIPS_CODE_VERSION, taxi_type, source_version)
        kept = cache.reuse(key, cache_key)
        if kept is not None:
            outputs[key] = kept
            continue
        with failing_without_retries(where=f"partition {key}"):
            trips = trip_source.trips_for_day(day, taxi_type=taxi_type)
        rows += trips.trips.height
        downloaded |= trips.downloaded
        outputs[key] = cache.record_computed(
            key,
            cache_key,
            trips.trips,
            {
                **table_metadata(trips.trips),
                "source": trips.source_description,
                "source_version": source_version,
            },
        )
        sources.add(trips.source_description)
    cache.log_summary()
    if cache.computed_keys:
        # One line for the run: each day's own count and source are in its materialization.
        context.log.info(
            f"read {rows:,} trips for {len(cache.computed_keys)} day(s) from "
            + ", ".join(sorted(sources))
        )
    return dg.MaterializeResult(
        value=outputs if len(outputs) > 1 else next(iter(outputs.values())),
        # One version for the whole run when every day came from the same source file.
        data_version=(
            dg.DataVersion(fingerprint(RAW_TRIPS_CODE_VERSION, taxi_type, *source_versions))
            if len(source_versions) == 1
            else None
        ),
        metadata={
            **cache.summary(),
            "run/rows_recomputed": rows,
            "synthetic": trip_source.synthetic,
            "downloaded": downloaded,
            "taxi_type": taxi_type,
        },
    )


def ingestion_assets(days: DailyPartitioning) -> list[dg.AssetsDefinition]:
    """The zone lookup and the daily raw trips, partitioned by the days of `days`."""
    return [
        dg.asset(
            group_name=INGESTION_GROUP,
            kinds={"polars", "parquet"},
            code_version="1",
            retry_policy=network_retry,
            tags={"stage": "ingest"},
        )(taxi_zones),
        dg.asset(
            group_name=INGESTION_GROUP,
            partitions_def=days.partitions,
            kinds={"polars", "parquet"},
            code_version=RAW_TRIPS_CODE_VERSION,
            retry_policy=network_retry,
            backfill_policy=dg.BackfillPolicy.single_run(),
            tags={"stage": "ingest"},
            metadata={"dagster/column_schema": column_schema(TRIP_SCHEMA)},
        )(raw_trips),
    ]
