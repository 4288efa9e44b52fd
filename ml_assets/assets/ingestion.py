"""Trips and zones, as they arrive from the source, in one normalized schema."""

from datetime import date

import dagster as dg
import polars as pl

from ml_assets.assets.metadata import table_metadata
from ml_assets.config import IngestionConfig
from ml_assets.partitions import daily_partitions
from ml_assets.resources.trip_source import TripSource

INGESTION_GROUP = "ingestion"

network_retry = dg.RetryPolicy(
    max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
"""Downloads fail transiently (timeouts, 5xx): retry with growing, jittered delays."""


@dg.asset(
    group_name=INGESTION_GROUP,
    kinds={"polars", "parquet"},
    code_version="1",
    retry_policy=network_retry,
    owners=["team:ml-platform"],
    tags={"domain": "nyc_taxi", "stage": "ingest"},
)
def taxi_zones(trip_source: TripSource) -> dg.MaterializeResult:
    """NYC TLC taxi zones: LocationID, Borough, Zone and service zone of every pickup/drop-off ID."""
    zones, origin = trip_source.zones()
    return dg.MaterializeResult(
        value=zones,
        metadata={
            **table_metadata(zones),
            "source": origin,
            "synthetic": trip_source.synthetic,
        },
    )


@dg.asset(
    group_name=INGESTION_GROUP,
    partitions_def=daily_partitions,
    kinds={"polars", "parquet"},
    code_version="1",
    retry_policy=network_retry,
    owners=["team:ml-platform"],
    tags={"domain": "nyc_taxi", "stage": "ingest"},
)
def raw_trips(
    context: dg.AssetExecutionContext, trip_source: TripSource, config: IngestionConfig
) -> dg.MaterializeResult:
    """Every trip picked up on the partition's day, in the normalized trip schema.

    Read from the month's TLC parquet file (downloaded once and cached) or from the synthetic
    sample source. Nothing is cleaned here: this is the day as the source reported it. The run
    config may pick the taxi type (green or yellow); by default it is ML_ASSETS_TAXI_TYPE.
    """
    taxi_type = config.taxi_type_or(trip_source.taxi_type)
    trips_by_day: dict[str, pl.DataFrame] = {}
    origins: set[str] = set()
    downloaded = False
    for key in context.partition_keys:
        day = trip_source.trips_for_day(date.fromisoformat(key), taxi_type=taxi_type)
        trips_by_day[key] = day.trips
        origins.add(day.source_description)
        downloaded |= day.downloaded
        context.log.info(f"{key}: {day.trips.height} trips from {day.source_description}")
    every_trip = pl.concat(trips_by_day.values())
    value = trips_by_day if len(trips_by_day) > 1 else every_trip
    return dg.MaterializeResult(
        value=value,
        metadata={
            **table_metadata(every_trip),
            "source": ", ".join(sorted(origins)),
            "synthetic": trip_source.synthetic,
            "downloaded": downloaded,
            "taxi_type": taxi_type,
        },
    )
