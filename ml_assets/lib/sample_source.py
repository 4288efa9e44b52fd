"""A synthetic, offline stand-in for the TLC source.

It produces trips in the raw TLC green/yellow schema with the structure that makes trip duration
learnable: zones grouped into boroughs with positions, popular and quiet zones, distances driven by
where trips start and end, slower traffic in rush hours and on weekdays, and the dirty rows real
files contain (zero distances, negative and day-long durations, unknown zones). The same day always
gives the same trips, so demos and tests are reproducible with no network.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import polars as pl

from ml_assets.lib.trip_schema import normalize_trips, source_column_names
from ml_assets.lib.zones import validate_zones

SAMPLE_VERSION = "2"
"""Bump when the generator changes, so cached outputs built from it are recomputed.

2: trip keys are digests of each trip's content, no longer file and row number."""

_BOROUGHS: tuple[tuple[str, int, tuple[float, float], float, str], ...] = (
    # name, zones, centre (miles east, miles north of midtown), spread, service zone
    ("EWR", 1, (-12.0, -3.0), 0.5, "EWR"),
    ("Queens", 69, (9.0, -1.0), 3.5, "Boro Zone"),
    ("Bronx", 43, (3.0, 9.0), 2.5, "Boro Zone"),
    ("Manhattan", 69, (0.0, 1.0), 2.0, "Yellow Zone"),
    ("Staten Island", 20, (-7.0, -11.0), 2.5, "Boro Zone"),
    ("Brooklyn", 61, (2.0, -6.0), 3.0, "Boro Zone"),
)
_ZONE_SEED = 20210101
TRIPS_PER_DAY = 2500


def _zone_table() -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(_ZONE_SEED)
    rows, positions, popularity = [], [], []
    for borough, count, (x, y), spread, service_zone in _BOROUGHS:
        for _ in range(count):
            location_id = len(rows) + 1
            rows.append(
                (location_id, borough, f"{borough} sample zone {location_id}", service_zone)
            )
            positions.append((x + rng.normal(0, spread), y + rng.normal(0, spread)))
            # Green cabs serve the outer boroughs and upper Manhattan most.
            weight = rng.lognormal(0.0, 1.0) * (0.6 if borough == "Manhattan" else 1.0)
            popularity.append(0.05 if borough in ("EWR", "Staten Island") else weight)
    rows.append((264, "Unknown", "N/A", "N/A"))
    rows.append((265, "N/A", "Outside of NYC", "N/A"))
    positions += [(0.0, 0.0), (0.0, 0.0)]
    popularity += [0.01, 0.01]
    zones = pl.DataFrame(
        rows, schema=["LocationID", "Borough", "Zone", "service_zone"], orient="row"
    ).with_columns(pl.col("LocationID").cast(pl.String))
    weights = np.asarray(popularity)
    return zones, np.asarray(positions), weights / weights.sum()


_ZONES, _POSITIONS, _POPULARITY = _zone_table()
_BOROUGH_OF = np.asarray(_ZONES["Borough"].to_list())


def sample_zones() -> pl.DataFrame:
    """The synthetic zone lookup, validated like TLC's and in the normalized zone schema (265 zones)."""
    return validate_zones(_ZONES, source_name="sample taxi_zone_lookup")


def _hour_weights() -> np.ndarray:
    hours = np.arange(24)
    morning = np.exp(-0.5 * ((hours - 8.5) / 1.8) ** 2)
    evening = np.exp(-0.5 * ((hours - 17.5) / 2.2) ** 2)
    weights = 0.15 + morning + 1.2 * evening
    return weights / weights.sum()


_HOUR_WEIGHTS = _hour_weights()


def sample_raw_trips(day: date, taxi_type: str = "green") -> pl.DataFrame:
    """One day of synthetic trips in the raw TLC column layout of `taxi_type`.

    Every trip is unique in content (no row repeats another in full), as in TLC's 2021 and later
    green months, so the repeated-trips check passes on every sample day.
    """
    seed = day.toordinal() * 2 + (0 if taxi_type == "green" else 1)
    rng = np.random.default_rng(seed)
    weekend = day.weekday() >= 5
    count = int(TRIPS_PER_DAY * (0.8 if weekend else 1.0) * rng.uniform(0.9, 1.1))

    zone_count = len(_POPULARITY)
    pickup_zone = rng.choice(zone_count, size=count, p=_POPULARITY)
    # Most trips stay near where they start: pick the drop-off among close zones by popularity.
    distances_between = np.linalg.norm(
        _POSITIONS[pickup_zone][:, None, :] - _POSITIONS[None], axis=2
    )
    closeness = _POPULARITY[None, :] * np.exp(-distances_between / 1.2)
    closeness /= closeness.sum(axis=1, keepdims=True)
    cumulative = closeness.cumsum(axis=1)
    dropoff_zone = (cumulative < rng.uniform(size=(count, 1))).sum(axis=1).clip(0, zone_count - 1)

    straight = np.linalg.norm(_POSITIONS[pickup_zone] - _POSITIONS[dropoff_zone], axis=1)
    distance = straight * rng.uniform(1.15, 1.45, size=count) + rng.gamma(2.0, 0.35, size=count)

    hour = rng.choice(24, size=count, p=_HOUR_WEIGHTS)
    second_of_hour = rng.integers(0, 3600, size=count)
    rush = np.isin(hour, (7, 8, 9, 16, 17, 18, 19)) & (not weekend)
    night = hour < 6
    speed_mph = np.full(count, 14.0)
    speed_mph[rush] *= 0.65
    speed_mph[night] *= 1.45
    manhattan = (_BOROUGH_OF[pickup_zone] == "Manhattan") | (
        _BOROUGH_OF[dropoff_zone] == "Manhattan"
    )
    speed_mph[manhattan] *= 0.75
    speed_mph *= rng.lognormal(0.0, 0.22, size=count)
    duration_min = 1.5 + distance / speed_mph * 60.0 + rng.exponential(1.0, size=count)

    # The dirt real files have, so cleaning and checks have something to do.
    dirt = rng.uniform(size=count)
    distance[dirt < 0.01] = 0.0
    duration_min[(dirt >= 0.01) & (dirt < 0.018)] = -rng.uniform(0.1, 5.0)
    duration_min[(dirt >= 0.018) & (dirt < 0.023)] = rng.uniform(90, 1400)
    duration_min[(dirt >= 0.023) & (dirt < 0.03)] = rng.uniform(0.0, 0.9)

    start = datetime(day.year, day.month, day.day)
    pickup = np.datetime64(start, "us") + (hour * 3600 + second_of_hour).astype("timedelta64[s]")
    dropoff = pickup + (duration_min * 60_000_000).astype("timedelta64[us]")
    location_ids = np.arange(1, zone_count + 1)
    columns = source_column_names(taxi_type)
    pickup_name, dropoff_name = list(columns)
    order = np.argsort(pickup, kind="stable")
    raw = pl.DataFrame(
        {
            "VendorID": rng.choice([1, 2], size=count, p=[0.2, 0.8]),
            pickup_name: pickup,
            dropoff_name: dropoff,
            "store_and_fwd_flag": np.full(count, "N"),
            "RatecodeID": np.ones(count),
            "PULocationID": location_ids[pickup_zone],
            "DOLocationID": location_ids[dropoff_zone],
            "passenger_count": rng.choice(
                [1.0, 2.0, 3.0, 5.0], size=count, p=[0.8, 0.12, 0.04, 0.04]
            ),
            "trip_distance": distance.round(2),
            "fare_amount": (2.5 + 2.5 * distance + 0.5 * np.clip(duration_min, 0, 120)).round(2),
            "payment_type": rng.choice([1.0, 2.0], size=count, p=[0.55, 0.45]),
        }
    )[order]
    # Drop-off times in microseconds from random durations make a repeated row practically
    # impossible (none in 800 days of either fleet); dropping any guarantees it.
    return raw.with_columns(total_amount=(pl.col("fare_amount") * 1.2).round(2)).unique(
        maintain_order=True
    )


def sample_trips(day: date, taxi_type: str = "green") -> pl.DataFrame:
    """One day of synthetic trips in the normalized trip schema."""
    return normalize_trips(
        sample_raw_trips(day, taxi_type),
        taxi_type=taxi_type,
        source_name=f"sample_{taxi_type}_tripdata_{day.isoformat()}",
    )


def sample_days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]
