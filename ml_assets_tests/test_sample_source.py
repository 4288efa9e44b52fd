"""The offline synthetic source: TLC's layout, reproducible, realistic enough to learn from."""

from datetime import date
from pathlib import Path

import polars as pl

from ml_assets.lib.features import build_trip_features
from ml_assets.lib.quality import repeated_trips
from ml_assets.lib.sample_source import (
    TRIPS_PER_DAY,
    sample_days,
    sample_raw_trips,
    sample_trips,
    sample_zones,
)
from ml_assets.lib.trip_schema import TRIP_SCHEMA
from ml_assets.lib.zones import ZONE_SCHEMA
from ml_assets.resources.trip_source import TripSource

MONDAY = date(2021, 1, 4)
SATURDAY = date(2021, 1, 9)


def test_raw_trips_have_the_taxi_types_own_column_names() -> None:
    green = sample_raw_trips(MONDAY, "green")
    yellow = sample_raw_trips(MONDAY, "yellow")

    assert {"lpep_pickup_datetime", "lpep_dropoff_datetime", "PULocationID"} <= set(green.columns)
    assert {"tpep_pickup_datetime", "tpep_dropoff_datetime"} <= set(yellow.columns)
    assert not green.equals(yellow.rename(dict(zip(yellow.columns, green.columns, strict=True))))


def test_the_same_day_gives_the_same_trips_and_days_differ() -> None:
    assert sample_trips(MONDAY).equals(sample_trips(MONDAY))
    assert not sample_trips(MONDAY).equals(sample_trips(MONDAY.replace(day=5)))


def test_trips_are_normalized_sorted_and_fall_on_their_day() -> None:
    trips = sample_trips(MONDAY)

    assert trips.schema == pl.Schema(TRIP_SCHEMA)
    assert trips["pickup_datetime"].dt.date().unique().to_list() == [MONDAY]
    assert trips["pickup_datetime"].is_sorted()
    assert trips["trip_key"].n_unique() == trips.height
    assert trips["trip_key"].str.contains("^[0-9a-f]{32}$").all()
    assert trips["PULocationID"].is_between(1, 265).all()


def test_every_sample_trip_is_unique_in_content_so_the_repeated_trips_check_passes() -> None:
    for taxi_type in ("green", "yellow"):
        for day in (MONDAY, SATURDAY):
            raw = sample_raw_trips(day, taxi_type)
            trips = sample_trips(day, taxi_type)
            assert not raw.is_duplicated().any(), (taxi_type, day)
            assert repeated_trips(trips) == 0, (taxi_type, day)
            assert trips.height == raw.height


def test_weekends_are_quieter_than_weekdays() -> None:
    assert 0.9 * TRIPS_PER_DAY <= sample_trips(MONDAY).height <= 1.1 * TRIPS_PER_DAY
    assert sample_trips(SATURDAY).height < 0.9 * TRIPS_PER_DAY


def test_the_data_holds_the_dirt_cleaning_must_remove() -> None:
    trips = sample_trips(MONDAY)
    minutes = (trips["dropoff_datetime"] - trips["pickup_datetime"]).dt.total_seconds() / 60

    assert (minutes < 0).sum() > 0
    assert (minutes > 60).sum() > 0
    assert (trips["trip_distance"] == 0).sum() > 0
    kept = build_trip_features(trips.lazy(), sample_zones().lazy()).collect().height
    assert 0.9 * trips.height < kept < trips.height


def test_rush_hour_trips_are_slower() -> None:
    features = pl.concat(
        build_trip_features(sample_trips(day).lazy(), sample_zones().lazy()).collect()
        for day in sample_days(MONDAY, MONDAY.replace(day=8))
    ).filter(pl.col("trip_distance") > 0.5)
    minutes_per_mile = features.group_by(
        pl.col("pickup_hour").is_in([7, 8, 9, 16, 17, 18, 19]).alias("rush")
    ).agg((pl.col("duration_min") / pl.col("trip_distance")).median().alias("pace"))
    pace = dict(minutes_per_mile.iter_rows())

    assert pace[True] > 1.2 * pace[False]


def test_zones_look_like_tlcs_lookup() -> None:
    zones = sample_zones()

    assert zones.schema == pl.Schema(ZONE_SCHEMA)
    assert zones["LocationID"].to_list() == list(range(1, 266))
    assert zones.filter(pl.col("LocationID") == 264).row(0) == (264, "Unknown", "N/A", "N/A")
    assert set(zones["Borough"]) >= {"Manhattan", "Queens", "Brooklyn", "Bronx", "EWR"}


def test_sample_days() -> None:
    assert sample_days(date(2021, 1, 30), date(2021, 2, 2)) == [
        date(2021, 1, 30),
        date(2021, 1, 31),
        date(2021, 2, 1),
        date(2021, 2, 2),
    ]


def test_the_sample_trip_source_says_it_is_synthetic(tmp_path: Path) -> None:
    source = TripSource(source="sample", cache_dir=str(tmp_path / "cache"))

    day = source.trips_for_day(MONDAY)
    zones, origin = source.zones()

    assert source.synthetic is True
    assert day.synthetic is True and day.downloaded is False
    assert "synthetic" in day.source_description
    assert day.trips.equals(sample_trips(MONDAY))
    assert "synthetic" in origin and zones.height == 265
    assert not (tmp_path / "cache").exists()  # nothing downloaded, nothing cached


def test_the_sample_trip_source_serves_yellow_cabs_too(tmp_path: Path) -> None:
    source = TripSource(source="sample", taxi_type="yellow", cache_dir=str(tmp_path / "cache"))

    day = source.trips_for_day(MONDAY)

    assert day.trips.schema == pl.Schema(TRIP_SCHEMA)
    assert day.trips.equals(sample_trips(MONDAY, "yellow"))
    assert "yellow" in day.source_description
    assert day.trips["trip_key"].n_unique() == day.trips.height
    assert not set(day.trips["trip_key"]) & set(sample_trips(MONDAY, "green")["trip_key"])
