"""The taxi zone lookup: read, validated and normalized before any trip is joined to it.

TLC publishes `taxi_zone_lookup.csv`: one row per zone with its `LocationID`, `Borough`, `Zone`
and `service_zone`. Features join every trip's pickup and drop-off zone to it, and a trip whose zone
is not in the lookup gets borough "Unknown". So a lookup that is empty, has a header and no rows,
repeats a `LocationID` or holds one that is not a number would not fail anywhere later: it would
quietly give every trip "Unknown", or duplicate trips in the join. `parse_zone_lookup` and
`validate_zones` refuse such a lookup when it is read, with a `ZoneLookupError` that names the file
and what is wrong. Both sources go through here on every read (the TLC client through
`parse_zone_lookup`, the sample source through `validate_zones`), so no invalid lookup reaches
`taxi_zones`. No Dagster here.
"""

from __future__ import annotations

import polars as pl

from ml_assets.lib.errors import TripSchemaError

ZONE_SCHEMA: dict[str, pl.DataType] = {
    "LocationID": pl.Int32(),
    "Borough": pl.String(),
    "Zone": pl.String(),
    "service_zone": pl.String(),
}
"""Columns of the normalized zone lookup, in order. Only `LocationID` must have a value."""

_SHOWN = 5
"""How many offending values a message lists before it says how many more there are."""


class ZoneLookupError(TripSchemaError):
    """The zone lookup is empty, lacks a column, or holds missing, non-numeric or repeated IDs.

    A `TripSchemaError`, so a step that reads it fails at once instead of being retried.
    """


def parse_zone_lookup(content: bytes, *, source_name: str) -> pl.DataFrame:
    """Read the bytes of a `taxi_zone_lookup.csv` into the validated, normalized zone lookup.

    `source_name` (the URL or file name) is named in every error. Rows are numbered in messages
    as lines of the file, its header being line 1.
    """
    if not content.strip():
        raise ZoneLookupError(
            f"{source_name}: the zone lookup is empty ({len(content)} bytes): expected a CSV "
            f"with the header {','.join(ZONE_SCHEMA)} and one row per zone"
        )
    try:
        # Every column read as text: validate_zones names the values that are not numbers.
        raw = pl.read_csv(content, infer_schema_length=0)
    except pl.exceptions.PolarsError as error:
        raise ZoneLookupError(
            f"{source_name}: the zone lookup is not a readable CSV file ({error})"
        ) from error
    return validate_zones(raw, source_name=source_name)


def validate_zones(frame: pl.DataFrame, *, source_name: str) -> pl.DataFrame:
    """`frame` checked and cast to `ZONE_SCHEMA`, sorted by `LocationID`.

    Raises `ZoneLookupError` naming `source_name` when a column is missing, there is no row, a
    `LocationID` is missing or not a whole number (named with its line, counting the header as
    line 1), or a `LocationID` appears more than once (the repeated IDs are named).
    """
    missing = [column for column in ZONE_SCHEMA if column not in frame.columns]
    if missing:
        raise ZoneLookupError(
            f"{source_name}: required column(s) {', '.join(missing)} missing "
            f"(found: {', '.join(frame.columns) or 'no columns'})"
        )
    if frame.height == 0:
        raise ZoneLookupError(
            f"{source_name}: the zone lookup has a header but no zones: every trip would get "
            "borough 'Unknown'"
        )
    ids = frame.select(
        pl.col("LocationID").alias("raw"),
        pl.col("LocationID").cast(pl.Int32, strict=False).alias("id"),
        (pl.int_range(pl.len()) + 2).alias("line"),
    )
    unreadable = ids.filter(pl.col("id").is_null())
    if unreadable.height:
        where = ", ".join(
            f"empty on line {line}" if raw is None else f"{raw!r} on line {line}"
            for raw, _, line in unreadable.head(_SHOWN).iter_rows()
        )
        raise ZoneLookupError(
            f"{source_name}: column LocationID holds {unreadable.height} value(s) that are not "
            f"whole numbers: {where}{_more(unreadable.height)}"
        )
    repeated = (
        ids.group_by("id").agg(pl.col("line")).filter(pl.col("line").list.len() > 1).sort("id")
    )
    if repeated.height:
        where = ", ".join(
            f"{location_id} (lines {', '.join(str(line) for line in lines)})"
            for location_id, lines in repeated.head(_SHOWN).iter_rows()
        )
        raise ZoneLookupError(
            f"{source_name}: {repeated.height} LocationID(s) appear more than once: "
            f"{where}{_more(repeated.height)}; each zone must have one row"
        )
    return frame.select(
        [pl.col(name).cast(dtype, strict=True) for name, dtype in ZONE_SCHEMA.items()]
    ).sort("LocationID")


def normalize_zones(raw: pl.DataFrame, *, source_name: str) -> pl.DataFrame:
    """The zone lookup `raw` validated and cast to `ZONE_SCHEMA` (the same as `validate_zones`).

    Kept under this name for the callers that normalized zones before validation existed.
    """
    return validate_zones(raw, source_name=source_name)


def _more(count: int) -> str:
    return f" and {count - _SHOWN} more" if count > _SHOWN else ""
