"""Feature building: cleaning rules, derived columns and the target, by hand."""

from datetime import date, datetime, timedelta

import polars as pl
import pytest

from ml_assets.lib.features import (
    FEATURE_SCHEMA,
    FEATURES_ENGINE,
    CleaningRules,
    build_trip_features,
    cleaning_summary,
    trip_features_frame,
    trips_on_day,
)
from ml_assets.lib.sample_source import sample_trips, sample_zones
from ml_assets.lib.trip_schema import TRIP_SCHEMA

ZONES = pl.DataFrame(
    {"LocationID": [1, 74, 75], "Borough": ["EWR", "Manhattan", "Manhattan"]},
    schema={"LocationID": pl.Int32, "Borough": pl.String},
)

MONDAY_8AM = datetime(2021, 1, 4, 8, 0)  # 2021-01-04 is a Monday


def trip(key: str, minutes: float, **values: object) -> dict[str, object]:
    pickup = values.pop("pickup", MONDAY_8AM)
    row: dict[str, object] = {name: None for name in TRIP_SCHEMA}
    row.update(
        trip_key=key,
        pickup_datetime=pickup,
        dropoff_datetime=pickup + timedelta(minutes=minutes),
        PULocationID=74,
        DOLocationID=75,
        trip_distance=2.0,
    )
    row.update(values)
    return row


def features_of(*rows: dict[str, object], rules: CleaningRules | None = None) -> pl.DataFrame:
    trips = pl.DataFrame(list(rows), schema=TRIP_SCHEMA)
    return trip_features_frame(trips.lazy(), ZONES.lazy(), rules)


def test_a_trip_becomes_one_row_of_features_and_its_duration() -> None:
    features = features_of(
        trip("a", 12.5, pickup=datetime(2021, 1, 10, 23, 45), PULocationID=1, DOLocationID=74)
    )

    assert features.schema == pl.Schema(FEATURE_SCHEMA)
    assert features.to_dicts() == [
        {
            "trip_key": "a",
            "pickup_datetime": datetime(2021, 1, 10, 23, 45),
            "PULocationID": 1,
            "DOLocationID": 74,
            "PU_DO": "1_74",
            "trip_distance": 2.0,
            "pickup_hour": 23,
            "pickup_dow": 7,  # Sunday, ISO
            "pu_borough": "EWR",
            "do_borough": "Manhattan",
            "duration_min": 12.5,
        }
    ]


@pytest.mark.parametrize(
    ("minutes", "kept"),
    [(0.99, False), (1.0, True), (30.0, True), (60.0, True), (60.01, False), (-3.0, False)],
)
def test_durations_outside_one_to_sixty_minutes_are_dropped(minutes: float, kept: bool) -> None:
    assert features_of(trip("a", minutes)).height == int(kept)


@pytest.mark.parametrize(
    ("changes", "kept"),
    [
        ({"trip_distance": 0.0}, True),
        ({"trip_distance": 100.0}, True),
        ({"trip_distance": 100.5}, False),
        ({"trip_distance": -0.1}, False),
        ({"trip_distance": None}, False),
        ({"PULocationID": 0}, False),
        ({"DOLocationID": 266}, False),
        ({"PULocationID": 265}, True),
    ],
)
def test_distance_and_zone_ranges(changes: dict[str, object], kept: bool) -> None:
    assert features_of(trip("a", 10.0, **changes)).height == int(kept)


def test_zones_missing_from_the_lookup_get_an_unknown_borough() -> None:
    features = features_of(trip("a", 10.0, PULocationID=200, DOLocationID=75))

    assert features.select("pu_borough", "do_borough").row(0) == ("Unknown", "Manhattan")


def test_rows_are_sorted_by_pickup_then_key() -> None:
    features = features_of(
        trip("b", 10.0, pickup=MONDAY_8AM),
        trip("c", 10.0, pickup=MONDAY_8AM - timedelta(hours=1)),
        trip("a", 10.0, pickup=MONDAY_8AM),
    )

    assert features["trip_key"].to_list() == ["c", "a", "b"]


def test_custom_cleaning_rules() -> None:
    rules = CleaningRules(
        min_duration_minutes=5, max_duration_minutes=20, max_trip_distance_miles=3
    )

    features = features_of(
        trip("short", 4.0),
        trip("ok", 15.0),
        trip("long", 25.0),
        trip("far", 15.0, trip_distance=3.5),
        rules=rules,
    )

    assert features["trip_key"].to_list() == ["ok"]


def test_trips_on_day_keeps_pickups_of_that_calendar_day() -> None:
    trips = pl.DataFrame(
        [
            trip("before", 5, pickup=datetime(2021, 1, 14, 23, 59, 59)),
            trip("first", 5, pickup=datetime(2021, 1, 15, 0, 0)),
            trip("last", 5, pickup=datetime(2021, 1, 15, 23, 59, 59)),
            trip("after", 5, pickup=datetime(2021, 1, 16, 0, 0)),
            trip("stray", 5, pickup=datetime(2009, 1, 15, 12, 0)),
        ],
        schema=TRIP_SCHEMA,
    )

    on_day = trips_on_day(trips.lazy(), date(2021, 1, 15)).collect()

    assert on_day["trip_key"].to_list() == ["first", "last"]


def test_cleaning_summary() -> None:
    assert cleaning_summary(200, 150) == {
        "raw_rows": 200,
        "kept_rows": 150,
        "dropped_rows": 50,
        "dropped_share": 0.25,
    }
    assert cleaning_summary(0, 0)["dropped_share"] == 0.0


def test_a_trip_repeated_in_full_becomes_one_feature_row() -> None:
    trips = pl.DataFrame(
        {
            "trip_key": ["a", "a", "b"],
            "pickup_datetime": [datetime(2021, 1, 5, 8, 0)] * 3,
            "dropoff_datetime": [datetime(2021, 1, 5, 8, 12)] * 3,
            "PULocationID": [41, 41, 42],
            "DOLocationID": [42, 42, 41],
            "trip_distance": [1.5, 1.5, 2.0],
        }
    )
    zones = pl.DataFrame({"LocationID": [41, 42], "Borough": ["Manhattan", "Manhattan"]})
    features = build_trip_features(trips.lazy(), zones.lazy()).collect()
    assert features["trip_key"].to_list() == ["a", "b"]


def test_the_engine_the_asset_collects_on_builds_what_polars_default_engine_builds() -> None:
    week = pl.concat(sample_trips(date(2021, 3, 1) + timedelta(days=n)) for n in range(7))
    # Trips served twice keep their first row on either engine.
    trips = pl.concat([week, week.head(40)])
    query = build_trip_features(trips.lazy(), sample_zones().lazy())

    on_the_assets_engine = query.collect(engine=FEATURES_ENGINE)

    assert (
        on_the_assets_engine.height
        == week.lazy().pipe(build_trip_features, sample_zones().lazy()).collect().height
        > 1000
    )
    assert on_the_assets_engine.equals(query.collect(engine="streaming"))
