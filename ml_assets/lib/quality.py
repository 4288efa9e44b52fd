"""Data-quality measurements behind the asset checks: null rates, stray days, repeated trips,
cleaning, drift.

Plain polars and numpy, no Dagster: the checks in `ml_assets/checks.py` turn these numbers into
pass/fail with a severity.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    # numpy is imported by the drift functions that use it: the checks module, which imports
    # this one, is loaded by every Dagster process.
    import numpy as np

MAX_REQUIRED_NULL_RATE = 0.01
"""Above this share of nulls in a required trip column, the source is likely broken."""

REPEATED_SHARE_ERROR = 0.01
"""Above this share of a day's (or a month file's) trips repeating another trip in full, the source
served trips twice: the day fails (ERROR, blocking) and a month file is refused as invalid content.

A trip repeats another when every column of its source row is the same (same `trip_key`). TLC green
months of 2021 and later hold none; other years and fleets may hold a handful of double
submissions, which only warn. Trips that merely share pickup and drop-off times, zones and distance
(about 0.2% of green trips) differ in other columns (fares, tips, flags), have distinct keys and
are not repeats at all."""

DROPPED_SHARE_WARN = 0.15
"""Cleaning normally drops ~3-5% of a day's trips (TLC green 2021); more deserves a look."""

DROPPED_SHARE_ERROR = 0.5
"""Cleaning dropping most of a day means the raw data is not what the features expect."""

PSI_WARN = 0.25
"""Population stability index above which a feature's distribution has shifted materially
(the usual reading: < 0.1 stable, 0.1..0.25 moderate, > 0.25 a real shift)."""

PLAUSIBLE_PREDICTION_MINUTES = (0.0, 120.0)
"""The model learns durations of 1..60 minutes; a prediction outside 0..120 is not believable."""

IMPLAUSIBLE_SHARE_ERROR = 0.01
"""A few implausible predictions (small windows extrapolate below zero) deserve a warning; more
than this share of the day means the model is broken."""

DRIFT_DISTANCE_BINS = 10
_PSI_FLOOR = 1e-4  # an empty bin would make PSI infinite; treat it as nearly empty instead


def null_rates(frame: pl.DataFrame, columns: Iterable[str]) -> dict[str, float]:
    """Share of null values per column (0.0 for an empty frame)."""
    columns = list(columns)
    if frame.height == 0:
        return dict.fromkeys(columns, 0.0)
    counts = frame.select(pl.col(columns).null_count()).row(0, named=True)
    return {column: round(counts[column] / frame.height, 6) for column in columns}


def pickups_outside_day(frame: pl.DataFrame, day: date) -> int:
    """Trips whose pickup is not on `day` (or is missing): a day's partition must hold none."""
    start = datetime(day.year, day.month, day.day)
    inside = (pl.col("pickup_datetime") >= start) & (
        pl.col("pickup_datetime") < start + timedelta(days=1)
    )
    return frame.height - frame.filter(inside).height


def repeated_trips(trips: pl.DataFrame) -> int:
    """Trips that repeat an earlier trip in full (same `trip_key`): every copy beyond the first."""
    return trips.height - trips.get_column("trip_key").n_unique()


def repeated_share(trips: pl.DataFrame) -> float:
    """Share of `trips` that repeat an earlier trip in full (0.0 for no trips)."""
    return repeated_trips(trips) / trips.height if trips.height else 0.0


def repeated_trips_by_day(trips: pl.DataFrame) -> dict[str, int]:
    """Repeated trips per pickup day (ISO date, or "no pickup time"), most repeats first."""
    copies = (
        trips.select(
            pl.col("pickup_datetime").dt.date().cast(pl.String).fill_null("no pickup time"),
            pl.col("trip_key").is_first_distinct().not_().alias("repeat"),
        )
        .group_by("pickup_datetime")
        .agg(pl.col("repeat").sum())
        .filter(pl.col("repeat") > 0)
        .sort("repeat", "pickup_datetime", descending=[True, False])
    )
    return dict(copies.iter_rows())


def repeated_trip_problem(trips: pl.DataFrame, *, source_name: str) -> str | None:
    """Why `trips` (a day, or a whole month file) cannot be used because of repeated trips, or None.

    None when at most `REPEATED_SHARE_ERROR` of the trips repeat another in full; otherwise a
    message naming `source_name`, how many trips repeat and on which pickup days the most do.
    """
    count = repeated_trips(trips)
    share = count / trips.height if trips.height else 0.0
    if share <= REPEATED_SHARE_ERROR:
        return None
    by_day = repeated_trips_by_day(trips)
    days = ", ".join(f"{day} ({repeats:,})" for day, repeats in list(by_day.items())[:3])
    more = f" and {len(by_day) - 3} more day(s)" if len(by_day) > 3 else ""
    return (
        f"{source_name}: {count:,} of {trips.height:,} trips ({share:.1%}) repeat another trip in "
        f"full (same trip_key), more than the {REPEATED_SHARE_ERROR:.0%} tolerated: the source "
        f"served trips twice; repeated on {days}{more}"
    )


def implausible_predictions(predictions: pl.DataFrame) -> int:
    """Predictions outside `PLAUSIBLE_PREDICTION_MINUTES`, NaN included."""
    low, high = PLAUSIBLE_PREDICTION_MINUTES
    # Polars orders NaN above every number, so is_between() is False for it.
    return predictions.filter(~pl.col("predicted_duration_min").is_between(low, high)).height


def dropped_share(raw_rows: int, kept_rows: int) -> float:
    """Share of raw trips that cleaning removed (0.0 when there were none)."""
    return (raw_rows - kept_rows) / raw_rows if raw_rows else 0.0


def population_stability_index(
    expected: np.ndarray, actual: np.ndarray, edges: np.ndarray
) -> float:
    """PSI of `actual` against `expected`, both binned by `edges` (the outer bins are open)."""
    import numpy as np

    expected_share = _bin_shares(expected, edges)
    actual_share = _bin_shares(actual, edges)
    return float(np.sum((actual_share - expected_share) * np.log(actual_share / expected_share)))


def _bin_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    import numpy as np

    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return np.maximum(counts / max(len(values), 1), _PSI_FLOOR)


def feature_drift(day: pl.DataFrame, window: pl.DataFrame) -> dict[str, float]:
    """PSI of trip distance (window deciles) and pickup hour (24 hours) of `day` against `window`."""
    import numpy as np

    distance_window = window["trip_distance"].to_numpy()
    inner_quantiles = np.linspace(0, 1, DRIFT_DISTANCE_BINS + 1)[1:-1]
    distance_edges = np.unique(np.quantile(distance_window, inner_quantiles))
    hour_edges = np.arange(1, 24)
    return {
        "trip_distance": round(
            population_stability_index(
                distance_window, day["trip_distance"].to_numpy(), distance_edges
            ),
            4,
        ),
        "pickup_hour": round(
            population_stability_index(
                window["pickup_hour"].to_numpy(), day["pickup_hour"].to_numpy(), hour_edges
            ),
            4,
        ),
    }
