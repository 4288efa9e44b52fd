"""The one schema every trip table in ml_assets is normalized to.

TLC files differ from month to month and between taxi types: IDs are int32 in some files and int64
in others, some columns are all-null (and typed `null`) in some months, and yellow cabs name their
timestamps `tpep_*` where green cabs use `lpep_*`. Everything downstream reads the normalized schema
below, never a raw TLC file.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

TAXI_TYPES = ("green", "yellow")

TRIP_SCHEMA: dict[str, pl.DataType] = {
    "trip_key": pl.String(),
    "VendorID": pl.Int32(),
    "pickup_datetime": pl.Datetime("us"),
    "dropoff_datetime": pl.Datetime("us"),
    "PULocationID": pl.Int32(),
    "DOLocationID": pl.Int32(),
    "passenger_count": pl.Int32(),
    "trip_distance": pl.Float64(),
    "RatecodeID": pl.Int32(),
    "payment_type": pl.Int32(),
    "fare_amount": pl.Float64(),
    "total_amount": pl.Float64(),
}
"""Normalized trip columns and their dtypes, in output order."""

REQUIRED_SOURCE_COLUMNS = (
    "pickup_datetime",
    "dropoff_datetime",
    "PULocationID",
    "DOLocationID",
    "trip_distance",
)
"""Columns without which a trip cannot be used; the others become null when a file lacks them."""

ZONE_SCHEMA: dict[str, pl.DataType] = {
    "LocationID": pl.Int32(),
    "Borough": pl.String(),
    "Zone": pl.String(),
    "service_zone": pl.String(),
}


class TripSchemaError(ValueError):
    """A trip file lacks a required column or holds values that cannot be read as its dtype."""


def source_column_names(taxi_type: str) -> dict[str, str]:
    """Map a taxi type's own column names to the normalized names."""
    prefix = {"green": "lpep", "yellow": "tpep"}.get(taxi_type)
    if prefix is None:
        raise ValueError(
            f"unknown taxi type {taxi_type!r}: expected one of {', '.join(TAXI_TYPES)}"
        )
    return {
        f"{prefix}_pickup_datetime": "pickup_datetime",
        f"{prefix}_dropoff_datetime": "dropoff_datetime",
    }


def normalize_trips(raw: pl.DataFrame, *, taxi_type: str, source_name: str) -> pl.DataFrame:
    """Rename, cast and order `raw` into `TRIP_SCHEMA`, adding a stable `trip_key`.

    `source_name` names the file in errors and is the prefix of every `trip_key`
    (`{source_name}:{row number}`), which stays the same however often the file is read.
    """
    renamed = raw.rename(
        {old: new for old, new in source_column_names(taxi_type).items() if old in raw.columns}
    )
    missing = [column for column in REQUIRED_SOURCE_COLUMNS if column not in renamed.columns]
    if missing:
        raise TripSchemaError(
            f"{source_name}: required column(s) {', '.join(missing)} missing "
            f"(found: {', '.join(raw.columns)})"
        )
    columns: list[pl.Expr] = []
    for name, dtype in TRIP_SCHEMA.items():
        if name == "trip_key":
            continue
        if name not in renamed.columns:
            columns.append(pl.lit(None, dtype=dtype).alias(name))
            continue
        source_dtype = renamed.schema[name]
        if name in REQUIRED_SOURCE_COLUMNS and source_dtype == pl.Null:
            raise TripSchemaError(
                f"{source_name}: required column {name} holds no values (all null)"
            )
        columns.append(_cast(renamed, name, source_dtype, dtype, source_name))
    keyed = renamed.select(columns).with_row_index("row_number")
    trips = keyed.select(
        pl.format("{}:{}", pl.lit(source_name), pl.col("row_number")).alias("trip_key"),
        pl.exclude("row_number"),
    )
    # Imported here because schemas.py builds its pandera schema from TRIP_SCHEMA above.
    from ml_assets.lib.schemas import TRIP_FRAME_SCHEMA, schema_problems

    problems = schema_problems(TRIP_FRAME_SCHEMA, trips)
    if problems:
        raise TripSchemaError(
            f"{source_name}: normalized trips break the trip schema: "
            + "; ".join(str(problem) for problem in problems)
        )
    return trips


def _cast(
    frame: pl.DataFrame, name: str, source: pl.DataType, target: pl.DataType, source_name: str
) -> pl.Expr:
    if isinstance(target, pl.Datetime):
        if source == pl.String:
            expr = pl.col(name).str.to_datetime(time_unit="us", strict=False)
        elif isinstance(source, pl.Datetime) and source.time_zone is not None:
            expr = pl.col(name).dt.convert_time_zone("UTC").dt.replace_time_zone(None).cast(target)
        else:
            expr = pl.col(name).cast(target, strict=False)
    else:
        expr = pl.col(name).cast(target, strict=False)
    converted = frame.select(
        expr.is_null().sum().alias("after"), pl.col(name).is_null().sum().alias("before")
    ).row(0)
    if converted[0] > converted[1]:
        bad = converted[0] - converted[1]
        raise TripSchemaError(
            f"{source_name}: column {name} has {bad} value(s) that cannot be read as {target} "
            f"(source dtype {source})"
        )
    return expr.alias(name)


def normalize_zones(raw: pl.DataFrame, *, source_name: str) -> pl.DataFrame:
    """Cast a zone lookup to `ZONE_SCHEMA`, failing with the file's name if a column is missing."""
    missing = [column for column in ZONE_SCHEMA if column not in raw.columns]
    if missing:
        raise TripSchemaError(
            f"{source_name}: required column(s) {', '.join(missing)} missing "
            f"(found: {', '.join(raw.columns)})"
        )
    return raw.select(
        [pl.col(name).cast(dtype, strict=True) for name, dtype in ZONE_SCHEMA.items()]
    ).sort("LocationID")


def empty_trips() -> pl.DataFrame:
    """A zero-row frame with the normalized trip schema."""
    return pl.DataFrame(schema=TRIP_SCHEMA)


def describe_schema(schema: Mapping[str, pl.DataType]) -> dict[str, str]:
    """Column name to dtype name, for logs and metadata."""
    return {name: str(dtype) for name, dtype in schema.items()}
