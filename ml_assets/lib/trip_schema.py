"""The one schema every trip table in ml_assets is normalized to.

TLC files differ from month to month and between taxi types: IDs are int32 in some files and int64
in others, some columns are all-null (and typed `null`) in some months, and yellow cabs name their
timestamps `tpep_*` where green cabs use `lpep_*`. Everything downstream reads the normalized schema
below, never a raw TLC file.

A trip's identity is its content: `trip_key` is a digest of the trip's full row as the source file
holds it (see `normalize_trips`). This module imports no other `ml_assets` module but the plain
helpers it uses (`errors`, `row_digest`, `quality`, `zones`); the pandera schemas in
`ml_assets.lib.schemas` import this one, never the other way round.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from ml_assets.lib.errors import TripSchemaError
from ml_assets.lib.quality import repeated_trip_problem
from ml_assets.lib.row_digest import row_digests

# The zone lookup has its own module; these names stay importable from here for the callers that
# imported them before it existed.
from ml_assets.lib.zones import ZONE_SCHEMA, normalize_zones

__all__ = [
    "REQUIRED_SOURCE_COLUMNS",
    "TAXI_TYPES",
    "TRIP_SCHEMA",
    "ZONE_SCHEMA",
    "TripSchemaError",
    "describe_schema",
    "empty_trips",
    "normalize_trips",
    "normalize_zones",
    "source_column_names",
]

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
    """Rename, cast and order `raw` into `TRIP_SCHEMA`, keying each trip by its content.

    `trip_key` is a 32-hex-digit digest of the trip's full source row: every column of `raw` as
    read (the fees, tips and flags that normalization drops included), by name and value. The same
    trip gets the same key however often, in whatever order and by whichever polars version the
    file is read (`ml_assets.lib.row_digest`); two trips that differ in any column of the file,
    even one dropped here, get different keys; and a row repeated in full repeats its key, which
    is how the checks see trips served twice.

    Raises `TripSchemaError` naming `source_name` when a required column is missing or all null,
    a value cannot be read as its dtype, or more than `quality.REPEATED_SHARE_ERROR` of the rows
    repeat another row in full (a file served twice over, say): such a file is invalid content.
    """
    renamed = raw.rename(_renames(raw.columns, taxi_type, source_name))
    missing = [column for column in REQUIRED_SOURCE_COLUMNS if column not in renamed.columns]
    if missing:
        raise TripSchemaError(
            f"{source_name}: required column(s) {', '.join(missing)} missing "
            f"(found: {', '.join(raw.columns)})"
        )
    columns: list[pl.Expr] = [pl.lit(row_digests(raw)).alias("trip_key")]
    casts: dict[str, tuple[pl.Expr, pl.Expr]] = {}
    for name, dtype in TRIP_SCHEMA.items():
        if name == "trip_key":
            continue
        if name not in renamed.columns:
            columns.append(pl.lit(None, dtype=dtype).alias(name))
            continue
        source_dtype = renamed.schema[name]
        if name in REQUIRED_SOURCE_COLUMNS and (
            source_dtype == pl.Null or renamed[name].null_count() == renamed.height
        ):
            raise TripSchemaError(
                f"{source_name}: required column {name} holds no values (all null)"
            )
        casts[name] = _cast(name, source_dtype, dtype)
        columns.append(casts[name][1])
    _raise_on_unreadable_values(renamed, casts, source_name)
    trips = renamed.select(columns)
    # Every column above is built with its target dtype; this guards that promise cheaply
    # (the pandera schema of `ml_assets.lib.schemas` is what the checks validate with).
    if trips.schema != pl.Schema(TRIP_SCHEMA):
        raise TripSchemaError(
            f"{source_name}: normalized trips have columns {describe_schema(trips.schema)}, "
            f"expected {describe_schema(TRIP_SCHEMA)}"
        )
    problem = repeated_trip_problem(trips, source_name=source_name)
    if problem is not None:
        raise TripSchemaError(problem)
    return trips


def _renames(columns: list[str], taxi_type: str, source_name: str) -> dict[str, str]:
    """Which columns of a file to rename to which normalized name.

    A column is found by its name in any case, since TLC's files have spelled some both ways over
    the years (`RatecodeID` and `RateCodeID`, `lpep_dropoff_datetime` and `Lpep_dropoff_datetime`);
    the expected spelling wins over others, and two other spellings of one name are ambiguous:
    `TripSchemaError` names them.
    """
    own_names = source_column_names(taxi_type)
    expected = {name: name for name in TRIP_SCHEMA if name != "trip_key"} | own_names
    by_lowercase = {spelling.lower(): name for spelling, name in expected.items()}
    spellings: dict[str, list[str]] = {}
    for column in columns:
        if column.lower() in by_lowercase:
            spellings.setdefault(by_lowercase[column.lower()], []).append(column)
    renames: dict[str, str] = {}
    for name, found in spellings.items():
        exact = [column for column in found if column in expected]
        if len(exact) == 1:
            chosen = exact[0]
        elif len(found) == 1:
            chosen = found[0]
        else:
            raise TripSchemaError(
                f"{source_name}: columns {', '.join(found)} all read as {name}; expected one"
            )
        if chosen != name:
            renames[chosen] = name
    return renames


def _cast(name: str, source: pl.DataType, target: pl.DataType) -> tuple[pl.Expr, pl.Expr]:
    """Column `name` as the values it holds and as read into `target`, where a value that cannot
    be read becomes null: more nulls in the second than in the first are unreadable values."""
    values = pl.col(name)
    if source.is_float() and target.is_integer():
        # NaN is how pandas writes a missing number (passenger counts, rate codes): a missing
        # value, not one that cannot be read.
        values = values.fill_nan(None)
    if isinstance(target, pl.Datetime) and source == pl.String:
        expr = values.str.to_datetime(time_unit="us", strict=False)
    elif isinstance(target, pl.Datetime) and isinstance(source, pl.Datetime) and source.time_zone:
        expr = values.dt.convert_time_zone("UTC").dt.replace_time_zone(None).cast(target)
    else:
        expr = values.cast(target, strict=False)
    return values, expr.alias(name)


def _raise_on_unreadable_values(
    frame: pl.DataFrame, casts: Mapping[str, tuple[pl.Expr, pl.Expr]], source_name: str
) -> None:
    """Raise `TripSchemaError` for the first column, in schema order, with unreadable values.

    Every column's nulls before and after its cast are counted in one pass over `frame`.
    """
    counts = frame.select(
        *(
            count
            for name, (values, cast) in casts.items()
            for count in (
                values.is_null().sum().alias(f"{name} before"),
                cast.is_null().sum().alias(f"{name} after"),
            )
        )
    ).row(0, named=True)
    for name in casts:
        unreadable = counts[f"{name} after"] - counts[f"{name} before"]
        if unreadable > 0:
            raise TripSchemaError(
                f"{source_name}: column {name} has {unreadable} value(s) that cannot be read as "
                f"{TRIP_SCHEMA[name]} (source dtype {frame.schema[name]})"
            )


def empty_trips() -> pl.DataFrame:
    """A zero-row frame with the normalized trip schema."""
    return pl.DataFrame(schema=TRIP_SCHEMA)


def describe_schema(schema: Mapping[str, pl.DataType]) -> dict[str, str]:
    """Column name to dtype name, for logs and metadata."""
    return {name: str(dtype) for name, dtype in schema.items()}
