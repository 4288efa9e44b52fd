"""The checks of `trip_features`: schema and the share of trips cleaning dropped.

Checks of the asset (not daily): a range run of `trip_features` gets one evaluation naming its
days.
"""

from collections.abc import Iterator, Sequence

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
from ml_assets.lib.quality import DROPPED_SHARE_ERROR, DROPPED_SHARE_WARN, dropped_share
from ml_assets.resources.parquet_io_manager import PartitionedFileIOManager

TRIP_FEATURES = "trip_features"
RAW_TRIPS = "raw_trips"


def trip_features_schema(trip_features: dict[str, pl.DataFrame]) -> dg.AssetCheckResult:
    """Feature columns and dtypes as declared, no nulls in any column, target `duration_min`
    within 1..60, zones within 1..265, distance within 0..100, hour 0..23, weekday 1..7.

    ERROR, blocking: the model is trained on and predicts from these columns; a null or an
    out-of-range target would silently train a worse model or break scoring.
    """
    from ml_assets.lib.schemas import FEATURE_FRAME_SCHEMA

    failures = schema_failures(FEATURE_FRAME_SCHEMA, trip_features)
    return day_result(failures, ERROR, rows=sum(frame.height for frame in trip_features.values()))


def trip_features_dropped_share(
    trip_features: dict[str, pl.DataFrame], raw_rows: dict[str, int]
) -> dg.AssetCheckResult:
    """Share of the day's trips removed by cleaning: WARN above 15%, ERROR (blocking) above 50%.

    Cleaning normally drops 3-5% of trips (implausible durations, distances or zones). Somewhat
    more is worth a look but the day is still usable (WARN, nothing is blocked); losing most of
    the day means the raw data is not what cleaning expects, and training or predicting on the
    remainder would be misleading (ERROR, downstream assets are skipped).
    """
    shares = {
        day: round(dropped_share(raw_rows[day], trip_features[day].height), 4)
        for day in trip_features
    }
    severity = ERROR if any(share > DROPPED_SHARE_ERROR for share in shares.values()) else WARN
    failures = {
        day: f"cleaning dropped {share:.1%} of trips"
        for day, share in shares.items()
        if share > DROPPED_SHARE_WARN
    }
    return day_result(
        failures,
        severity,
        dropped_share=max(shares.values(), default=0.0),
        warn_above=DROPPED_SHARE_WARN,
        error_above=DROPPED_SHARE_ERROR,
    )


def stored_row_counts(
    io_manager: PartitionedFileIOManager, asset_key: dg.AssetKey, days: Sequence[str]
) -> dict[str, int]:
    """How many rows each stored day of `asset_key` holds, from the parquet footers alone: the
    dropped share needs the raw days' sizes, not their trips."""
    paths = {}
    for day in days:
        path = io_manager.stored_path(asset_key, day)
        if path is None:
            raise FileNotFoundError(
                f"partition {day} of {asset_key.to_user_string()} has not been materialized"
            )
        paths[day] = path
    counts = pl.collect_all([pl.scan_parquet(path).select(pl.len()) for path in paths.values()])
    return {day: count.item() for day, count in zip(paths, counts, strict=True)}


TRIP_FEATURES_CHECKS = {trip_features_schema: True, trip_features_dropped_share: True}
"""Each check of `trip_features`, and whether it is blocking."""


@dg.multi_asset_check(
    name="trip_features_checks",
    specs=[
        check_spec(check, TRIP_FEATURES, blocking, reads=(RAW_TRIPS,))
        for check, blocking in TRIP_FEATURES_CHECKS.items()
    ],
)
def trip_features_checks(
    context: dg.AssetCheckExecutionContext,
    io_manager: dg.ResourceParam[PartitionedFileIOManager],
) -> Iterator[dg.AssetCheckResult]:
    """Schema and cleaning losses of the run's days of features."""
    days = days_of_run(context, TRIP_FEATURES)
    keys = [dg.AssetKey(TRIP_FEATURES), dg.AssetKey(RAW_TRIPS)]
    inputs = inputs_fingerprint(io_manager, keys, days)
    results = carried(context, list(TRIP_FEATURES_CHECKS), TRIP_FEATURES, days, inputs)
    if results is not None:
        yield from results
        return
    trip_features = io_manager.load_frames(dg.AssetKey(TRIP_FEATURES), days)
    schema = trip_features_schema(trip_features=trip_features)
    yield fresh(named(schema, trip_features_schema, TRIP_FEATURES, days), inputs)
    raw_rows = stored_row_counts(io_manager, dg.AssetKey(RAW_TRIPS), days)
    dropped = trip_features_dropped_share(trip_features=trip_features, raw_rows=raw_rows)
    yield fresh(named(dropped, trip_features_dropped_share, TRIP_FEATURES, days), inputs)
