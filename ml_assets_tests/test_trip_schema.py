"""Normalizing raw TLC-shaped frames into the one trip schema."""

from datetime import UTC, datetime

import polars as pl
import pytest

from ml_assets.lib.trip_schema import (
    TRIP_SCHEMA,
    TripSchemaError,
    describe_schema,
    empty_trips,
    normalize_trips,
    normalize_zones,
    source_column_names,
)


def raw_green(**overrides: pl.Series | list[object]) -> pl.DataFrame:
    columns: dict[str, object] = {
        "VendorID": pl.Series([2, 1], dtype=pl.Int64),
        "lpep_pickup_datetime": [datetime(2021, 1, 5, 7, 0), datetime(2021, 1, 5, 7, 30)],
        "lpep_dropoff_datetime": [datetime(2021, 1, 5, 7, 10), datetime(2021, 1, 5, 8, 0)],
        "PULocationID": pl.Series([74, 7], dtype=pl.Int64),
        "DOLocationID": pl.Series([75, 129], dtype=pl.Int64),
        "passenger_count": [1.0, None],
        "trip_distance": [1.5, 6.25],
        "RatecodeID": [1.0, 5.0],
        "payment_type": [1.0, 2.0],
        "fare_amount": [8.0, 22.5],
        "total_amount": [9.3, 25.8],
        "ehail_fee": pl.Series([None, None], dtype=pl.Null),
    }
    columns.update(overrides)
    return pl.DataFrame(columns)


def test_green_trips_are_renamed_cast_and_keyed_by_file_and_row() -> None:
    trips = normalize_trips(raw_green(), taxi_type="green", source_name="green_2021-01.parquet")

    assert trips.schema == pl.Schema(TRIP_SCHEMA)
    assert trips.to_dicts() == [
        {
            "trip_key": "green_2021-01.parquet:0",
            "VendorID": 2,
            "pickup_datetime": datetime(2021, 1, 5, 7, 0),
            "dropoff_datetime": datetime(2021, 1, 5, 7, 10),
            "PULocationID": 74,
            "DOLocationID": 75,
            "passenger_count": 1,
            "trip_distance": 1.5,
            "RatecodeID": 1,
            "payment_type": 1,
            "fare_amount": 8.0,
            "total_amount": 9.3,
        },
        {
            "trip_key": "green_2021-01.parquet:1",
            "VendorID": 1,
            "pickup_datetime": datetime(2021, 1, 5, 7, 30),
            "dropoff_datetime": datetime(2021, 1, 5, 8, 0),
            "PULocationID": 7,
            "DOLocationID": 129,
            "passenger_count": None,
            "trip_distance": 6.25,
            "RatecodeID": 5,
            "payment_type": 2,
            "fare_amount": 22.5,
            "total_amount": 25.8,
        },
    ]


def test_yellow_trips_use_tpep_timestamps() -> None:
    raw = raw_green().rename(
        {
            "lpep_pickup_datetime": "tpep_pickup_datetime",
            "lpep_dropoff_datetime": "tpep_dropoff_datetime",
        }
    )

    trips = normalize_trips(raw, taxi_type="yellow", source_name="yellow.parquet")

    assert trips["pickup_datetime"].to_list() == raw["tpep_pickup_datetime"].to_list()
    assert trips["dropoff_datetime"].to_list() == raw["tpep_dropoff_datetime"].to_list()


def test_int32_and_int64_ids_give_identical_trips() -> None:
    wide = raw_green()
    narrow = wide.with_columns(pl.col("VendorID", "PULocationID", "DOLocationID").cast(pl.Int32))

    assert normalize_trips(wide, taxi_type="green", source_name="f").equals(
        normalize_trips(narrow, taxi_type="green", source_name="f")
    )


def test_missing_optional_columns_become_typed_nulls() -> None:
    raw = raw_green().drop("passenger_count", "RatecodeID", "total_amount")

    trips = normalize_trips(raw, taxi_type="green", source_name="f")

    assert trips.schema == pl.Schema(TRIP_SCHEMA)
    assert trips["passenger_count"].null_count() == 2
    assert trips["total_amount"].null_count() == 2


def test_missing_required_columns_are_named_with_the_file() -> None:
    raw = raw_green().drop("PULocationID", "trip_distance")

    with pytest.raises(TripSchemaError) as raised:
        normalize_trips(raw, taxi_type="green", source_name="green_tripdata_2021-01.parquet")

    message = str(raised.value)
    assert message.startswith(
        "green_tripdata_2021-01.parquet: required column(s) PULocationID, trip_distance missing"
    )
    assert "lpep_pickup_datetime" in message  # lists what the file does have


def test_timestamps_named_for_the_wrong_taxi_type_are_missing() -> None:
    with pytest.raises(TripSchemaError, match=r"pickup_datetime, dropoff_datetime missing"):
        normalize_trips(raw_green(), taxi_type="yellow", source_name="yellow.parquet")


def test_an_all_null_required_column_is_unusable() -> None:
    raw = raw_green(DOLocationID=pl.Series([None, None], dtype=pl.Null))

    with pytest.raises(
        TripSchemaError, match=r"^f.parquet: required column DOLocationID holds no values"
    ):
        normalize_trips(raw, taxi_type="green", source_name="f.parquet")


def test_values_that_cannot_be_cast_are_counted_and_named() -> None:
    raw = raw_green(PULocationID=["74", "seven"])

    with pytest.raises(
        TripSchemaError,
        match=r"^f.parquet: column PULocationID has 1 value\(s\) that cannot be read as Int32 "
        r"\(source dtype String\)",
    ):
        normalize_trips(raw, taxi_type="green", source_name="f.parquet")


def test_string_and_time_zone_aware_timestamps_become_naive_utc() -> None:
    raw = raw_green(
        lpep_pickup_datetime=["2021-01-05 07:00:00", "2021-01-05 07:30:00"],
        lpep_dropoff_datetime=pl.Series(
            [datetime(2021, 1, 5, 7, 10, tzinfo=UTC), datetime(2021, 1, 5, 8, 0, tzinfo=UTC)]
        ).dt.convert_time_zone("America/New_York"),
    )

    trips = normalize_trips(raw, taxi_type="green", source_name="f")

    assert trips["pickup_datetime"].to_list() == [
        datetime(2021, 1, 5, 7, 0),
        datetime(2021, 1, 5, 7, 30),
    ]
    assert trips["dropoff_datetime"].to_list() == [
        datetime(2021, 1, 5, 7, 10),
        datetime(2021, 1, 5, 8, 0),
    ]


def test_unparseable_timestamp_strings_are_reported() -> None:
    raw = raw_green(lpep_pickup_datetime=["2021-01-05 07:00:00", "yesterday"])

    with pytest.raises(TripSchemaError, match=r"column pickup_datetime has 1 value\(s\)"):
        normalize_trips(raw, taxi_type="green", source_name="f")


def test_unknown_taxi_type_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"unknown taxi type 'fhv': expected one of green, yellow"):
        source_column_names("fhv")


def test_zones_are_typed_and_sorted() -> None:
    raw = pl.DataFrame(
        {
            "LocationID": ["2", "1"],
            "Borough": ["Queens", "EWR"],
            "Zone": ["Jamaica Bay", "Newark Airport"],
            "service_zone": ["Boro Zone", "EWR"],
        }
    )

    zones = normalize_zones(raw, source_name="zones.csv")

    assert zones["LocationID"].dtype == pl.Int32
    assert zones["Zone"].to_list() == ["Newark Airport", "Jamaica Bay"]


def test_zones_without_a_column_fail_naming_file_and_column() -> None:
    raw = pl.DataFrame({"LocationID": ["1"], "Borough": ["EWR"], "Zone": ["Newark Airport"]})

    with pytest.raises(
        TripSchemaError, match=r"^zones.csv: required column\(s\) service_zone missing"
    ):
        normalize_zones(raw, source_name="zones.csv")


def test_empty_trips_and_schema_description() -> None:
    assert empty_trips().schema == pl.Schema(TRIP_SCHEMA)
    assert empty_trips().height == 0
    assert describe_schema({"a": pl.Int32(), "b": pl.Datetime("us")}) == {
        "a": "Int32",
        "b": "Datetime(time_unit='us', time_zone=None)",
    }
