"""Checking what a TLC month file holds: readable parquet, rows, the trip schema, its own month.

A file that fails is never cached; a cached one that fails when read is dropped (see
`ml_assets.lib.tlc_client`). Each message names the file and says what is wrong.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from ml_assets.lib.tlc_errors import CorruptFileError
from ml_assets.lib.trip_schema import TripSchemaError, normalize_trips


def read_month_trips(
    path: Path, *, taxi_type: str, source_name: str, month: date | None = None
) -> pl.DataFrame:
    """The trips of a month file, normalized to the trip schema.

    Raises `CorruptFileError` when the file is not readable parquet or holds no rows, and
    `TripSchemaError` (naming `source_name` and the column) when its content breaks the schema or,
    given `month`, when most of its trips are not of that month (another month's file).
    """
    try:
        raw = pl.read_parquet(path)
    except PermissionError:
        raise  # the file may be fine; the folder's permissions are not
    except (OSError, pl.exceptions.PolarsError) as error:
        raise CorruptFileError(f"{source_name}: {unreadable_reason(path, error)}") from error
    if raw.height == 0:
        raise CorruptFileError(f"{source_name}: the parquet file holds no rows")
    trips = normalize_trips(raw, taxi_type=taxi_type, source_name=source_name)
    if month is not None:
        _check_month(trips, month, source_name)
    return trips


MIN_SHARE_OF_OWN_MONTH = 0.5
"""A month file holds a few trips of other days (late reports, clock errors), never mostly."""


def _check_month(trips: pl.DataFrame, month: date, source_name: str) -> None:
    pickup_month = pl.col("pickup_datetime").dt.strftime("%Y-%m")
    own = trips.filter(pickup_month == f"{month:%Y-%m}").height
    if own < MIN_SHARE_OF_OWN_MONTH * trips.height:
        common = trips.group_by(pickup_month.alias("month")).len().sort("len", descending=True)
        top = ", ".join(f"{row['month']}: {row['len']:,}" for row in common.head(3).to_dicts())
        raise TripSchemaError(
            f"{source_name}: only {own:,} of {trips.height:,} trips are picked up in "
            f"{month:%Y-%m} (by month: {top}); this is not the file of {month:%Y-%m}"
        )


def unreadable_reason(path: Path, error: BaseException) -> str:
    """Why `path` could not be read as parquet, in words a person can act on."""
    size = path.stat().st_size
    if size == 0:
        return "the file is empty (0 bytes)"
    with path.open("rb") as handle:
        start = handle.read(512).lstrip().lower()
    if start.startswith((b"<!doctype html", b"<html", b"<?xml", b"<")):
        return (
            "the file is a web page (HTML), not parquet: the server answered with a page, "
            "for example an error page or a wrong URL"
        )
    return f"not a readable parquet file ({error}); it may be truncated ({size:,} bytes)"


def validate_parquet(path: Path, url: str) -> None:
    try:
        # The row count comes from the footer: a truncated file has none to read.
        rows = pl.scan_parquet(path).select(pl.len()).collect().item()
    except PermissionError:
        raise
    except Exception as error:
        raise CorruptFileError(
            f"{url}: the download is not usable: {unreadable_reason(path, error)}"
        ) from error
    if rows == 0:
        raise CorruptFileError(f"{url}: the parquet file holds no rows")
