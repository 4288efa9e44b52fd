"""The checks of `raw_trips`: schema, empty days, stray days, repeated trips and null rates.

Checks of the asset (not daily): a range run of `raw_trips` gets one evaluation naming its days.
"""

from collections.abc import Iterator
from datetime import date

import dagster as dg
import polars as pl

from ml_assets.checks.carry_over import fresh, inputs_fingerprint
from ml_assets.checks.results import (
    ERROR,
    WARN,
    carried,
    check_spec,
    day_result,
    days_of_run,
    named,
    schema_failures,
)
from ml_assets.lib.quality import (
    MAX_REQUIRED_NULL_RATE,
    REPEATED_SHARE_ERROR,
    null_rates,
    pickups_outside_day,
    repeated_trips,
)
from ml_assets.lib.trip_schema import REQUIRED_SOURCE_COLUMNS, TRIP_SCHEMA
from ml_assets.resources.parquet_io_manager import PartitionedFileIOManager

RAW_TRIPS = "raw_trips"

# The schemas are imported where a check uses them: pandera imports pandas (~0.4 s), which only
# the check steps need, not every process that loads the code location.


def raw_trips_schema(raw_trips: dict[str, pl.DataFrame]) -> dg.AssetCheckResult:
    """Every normalized column present with its dtype, in order, and every trip keyed.

    Repeated keys are the repeated-trips check's concern (it tolerates a few).

    ERROR, blocking: features and the model read these columns by name and dtype; a table that
    breaks the schema would fail them obscurely or, worse, be misread.
    """
    from ml_assets.lib.schemas import TRIP_FRAME_SCHEMA

    failures = schema_failures(TRIP_FRAME_SCHEMA, raw_trips)
    return day_result(failures, ERROR, expected_columns=list(TRIP_SCHEMA))


def raw_trips_not_empty(raw_trips: dict[str, pl.DataFrame]) -> dg.AssetCheckResult:
    """At least one trip on the day.

    ERROR, blocking: NYC has thousands of trips every day; none means the source file or the
    download is broken, and a model trained or evaluated on an empty day means nothing.
    """
    rows = {day: frame.height for day, frame in raw_trips.items()}
    failures = {day: "no trips" for day, count in rows.items() if count == 0}
    return day_result(failures, ERROR, rows=sum(rows.values()))


def raw_trips_pickups_on_day(raw_trips: dict[str, pl.DataFrame]) -> dg.AssetCheckResult:
    """Every trip's pickup falls on the partition's day.

    ERROR, blocking: TLC month files hold stray trips of other days (even other years); a day
    that lets them in would count trips twice and leak later days into training.
    """
    outside = {
        day: pickups_outside_day(frame, date.fromisoformat(day)) for day, frame in raw_trips.items()
    }
    failures = {
        day: f"{count} pickup(s) outside the day" for day, count in outside.items() if count
    }
    return day_result(failures, ERROR, pickups_outside_day=sum(outside.values()))


def raw_trips_repeated_trips(raw_trips: dict[str, pl.DataFrame]) -> dg.AssetCheckResult:
    """No trip repeated in full: WARN for a few repeats, ERROR (blocking) when more than 1% of a
    day's trips repeat another; the failing days and their repeat counts are in the description.

    A trip's key is a digest of its whole source row (every column of the TLC file, those that
    normalization drops included), so two trips share a key only if the source holds the same row
    twice, and a day served twice over repeats every key. Tolerance: TLC's green months of 2021
    and later hold no row repeated in full; other years and fleets may hold a handful of double
    submissions, which warn (the day is usable: `trip_features` keeps one copy of each trip, so
    none trains twice). Above 1% of a day the source served trips twice: ERROR, and nothing
    downstream runs on the day. Trips that only share pickup and drop-off times, zones and
    distance with another (about 0.2% of green trips) differ in other columns; they are distinct
    trips with distinct keys and never count here.
    """
    counts = {day: repeated_trips(frame) for day, frame in raw_trips.items()}
    shares = {day: count / raw_trips[day].height if count else 0.0 for day, count in counts.items()}
    severity = ERROR if any(share > REPEATED_SHARE_ERROR for share in shares.values()) else WARN
    failures = {
        day: f"{count:,} of {raw_trips[day].height:,} trips ({shares[day]:.1%}) repeat another "
        "trip in full"
        for day, count in counts.items()
        if count
    }
    return day_result(
        failures,
        severity,
        repeated_trips=sum(counts.values()),
        max_repeated_share=round(max(shares.values(), default=0.0), 4),
        error_above=REPEATED_SHARE_ERROR,
    )


def raw_trips_null_rates(raw_trips: dict[str, pl.DataFrame]) -> dg.AssetCheckResult:
    """Share of missing values of the required columns (pickup and drop-off time, zones,
    distance) at most 1%; the rates of every column are in the metadata.

    WARN, not blocking: cleaning drops trips with missing required values, so the day is still
    usable; a high rate points at a source problem worth a look. Optional columns (passenger
    count, rate code, payment type) are often half empty in TLC files and are only reported.
    """
    rates_by_day = {day: null_rates(frame, TRIP_SCHEMA) for day, frame in raw_trips.items()}
    failures = {}
    for day, rates in rates_by_day.items():
        high = {c: rates[c] for c in REQUIRED_SOURCE_COLUMNS if rates[c] > MAX_REQUIRED_NULL_RATE}
        if high:
            failures[day] = ", ".join(f"{column} {rate:.1%} null" for column, rate in high.items())
    worst = {
        column: max(rates[column] for rates in rates_by_day.values()) for column in TRIP_SCHEMA
    }
    return day_result(
        failures,
        WARN,
        max_required_null_rate=MAX_REQUIRED_NULL_RATE,
        null_rates=dg.MetadataValue.json(worst),
    )


RAW_TRIPS_CHECKS = {
    raw_trips_schema: True,
    raw_trips_not_empty: True,
    raw_trips_pickups_on_day: True,
    raw_trips_repeated_trips: True,
    raw_trips_null_rates: False,
}
"""Each check of `raw_trips`, and whether it is blocking."""


@dg.multi_asset_check(
    name="raw_trips_checks",
    specs=[check_spec(check, RAW_TRIPS, blocking) for check, blocking in RAW_TRIPS_CHECKS.items()],
)
def raw_trips_checks(
    context: dg.AssetCheckExecutionContext,
    io_manager: dg.ResourceParam[PartitionedFileIOManager],
) -> Iterator[dg.AssetCheckResult]:
    """Schema, emptiness, stray days, repeated trips and null rates of the run's days of raw
    trips."""
    days = days_of_run(context, RAW_TRIPS)
    inputs = inputs_fingerprint(io_manager, [dg.AssetKey(RAW_TRIPS)], days)
    results = carried(context, list(RAW_TRIPS_CHECKS), RAW_TRIPS, days, inputs)
    if results is not None:
        yield from results
        return
    # Read here, not as an input: an input of a check of the asset would be every day there is.
    raw_trips = io_manager.load_frames(dg.AssetKey(RAW_TRIPS), days)
    for check in RAW_TRIPS_CHECKS:
        yield fresh(named(check(raw_trips=raw_trips), check, RAW_TRIPS, days), inputs)
