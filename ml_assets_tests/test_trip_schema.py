"""Normalizing raw TLC-shaped frames into the one trip schema, keyed by content."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from ml_assets.lib.quality import REPEATED_SHARE_ERROR
from ml_assets.lib.row_digest import row_digests
from ml_assets.lib.trip_schema import (
    TRIP_SCHEMA,
    TripSchemaError,
    describe_schema,
    empty_trips,
    normalize_trips,
    normalize_zones,
    source_column_names,
)
from ml_assets_tests.conftest import SHARED_TLC_DIR


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


def test_green_trips_are_renamed_cast_and_keyed_by_content() -> None:
    trips = normalize_trips(raw_green(), taxi_type="green", source_name="green_2021-01.parquet")

    keys = row_digests(raw_green()).to_list()
    assert trips.schema == pl.Schema(TRIP_SCHEMA)
    assert trips.to_dicts() == [
        {
            "trip_key": keys[0],
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
            "trip_key": keys[1],
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


def test_a_trip_has_the_same_key_in_any_file_at_any_row(tmp_path: Path) -> None:
    raw = raw_green()
    path = tmp_path / "green_tripdata_2021-01.parquet"
    raw.reverse().write_parquet(path)

    first = normalize_trips(raw, taxi_type="green", source_name="first.parquet")
    reread = normalize_trips(pl.read_parquet(path), taxi_type="green", source_name=path.name)

    assert reread["trip_key"].to_list() == first["trip_key"].to_list()[::-1]
    assert all(len(key) == 32 and int(key, 16) >= 0 for key in first["trip_key"])


def test_trips_that_differ_only_in_a_dropped_column_keep_distinct_keys() -> None:
    # tip_amount is not part of the normalized schema, but it is part of the trip.
    raw = pl.concat([raw_green().head(1), raw_green().head(1)]).with_columns(
        tip_amount=pl.Series([0.0, 2.0])
    )

    trips = normalize_trips(raw, taxi_type="green", source_name="f.parquet")

    assert trips.drop("trip_key").is_duplicated().all()
    assert trips["trip_key"].n_unique() == 2


def test_a_trip_repeated_in_full_repeats_its_key_and_a_few_repeats_are_tolerated() -> None:
    raw = many_trips(300)
    few = pl.concat([raw, raw.head(3)])  # 3 of 303: under 1%

    trips = normalize_trips(few, taxi_type="green", source_name="f.parquet")

    assert trips.height == 303
    assert trips["trip_key"].n_unique() == 300
    assert trips["trip_key"][300:].to_list() == trips["trip_key"][:3].to_list()


def test_a_file_served_twice_is_invalid_content_named_with_file_days_and_count() -> None:
    raw = many_trips(300)

    with pytest.raises(TripSchemaError) as raised:
        normalize_trips(
            pl.concat([raw, raw]), taxi_type="green", source_name="green_tripdata_2021-01.parquet"
        )

    assert str(raised.value) == (
        "green_tripdata_2021-01.parquet: 300 of 600 trips (50.0%) repeat another trip in full "
        f"(same trip_key), more than the {REPEATED_SHARE_ERROR:.0%} tolerated: the source served "
        "trips twice; repeated on 2021-01-05 (150), 2021-01-06 (150)"
    )
    with pytest.raises(TripSchemaError, match=r"^f.parquet: 4 of 304 trips \(1.3%\) repeat"):
        normalize_trips(pl.concat([raw, raw.head(4)]), taxi_type="green", source_name="f.parquet")


def test_the_real_january_file_has_unique_keys_though_some_trips_look_alike() -> None:
    path = SHARED_TLC_DIR / "green_tripdata_2021-01.parquet"
    if not path.exists():
        pytest.skip(f"the real TLC month is not available at {path} (a shared data directory)")

    trips = normalize_trips(pl.read_parquet(path), taxi_type="green", source_name=path.name)

    assert trips["trip_key"].n_unique() == trips.height == 76518
    # About 0.2% of real trips share pickup and drop-off times, zones and distance with another
    # trip; they are distinct trips (fares, tips and flags differ), not repeats.
    alike = trips.select(
        "pickup_datetime", "dropoff_datetime", "PULocationID", "DOLocationID", "trip_distance"
    ).is_duplicated()
    assert 100 < alike.sum() < 0.01 * trips.height


def many_trips(count: int) -> pl.DataFrame:
    """`count` distinct green trips, half picked up on 2021-01-05 and half on 2021-01-06."""
    start = datetime(2021, 1, 5)
    pickups = [start + timedelta(minutes=2 * n * 1440 // count) for n in range(count)]
    return pl.DataFrame(
        {
            "lpep_pickup_datetime": pickups,
            "lpep_dropoff_datetime": [pickup + timedelta(minutes=9) for pickup in pickups],
            "PULocationID": [74] * count,
            "DOLocationID": [75] * count,
            "trip_distance": [1.5] * count,
        }
    )


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


def test_columns_are_found_however_tlc_capitalized_them() -> None:
    raw = raw_green().rename(
        {"RatecodeID": "RateCodeID", "lpep_dropoff_datetime": "Lpep_dropoff_datetime"}
    )

    trips = normalize_trips(raw, taxi_type="green", source_name="green_tripdata_2015-01.parquet")

    assert trips["RatecodeID"].to_list() == [1, 5]
    assert trips["dropoff_datetime"].to_list() == [
        datetime(2021, 1, 5, 7, 10),
        datetime(2021, 1, 5, 8, 0),
    ]


def test_the_expected_spelling_wins_and_two_other_spellings_are_named() -> None:
    both = raw_green(ratecodeid=[3.0, 3.0])
    trips = normalize_trips(both, taxi_type="green", source_name="f.parquet")
    assert trips["RatecodeID"].to_list() == [1, 5]

    ambiguous = raw_green(ratecodeid=[3.0, 3.0]).rename({"RatecodeID": "RateCodeID"})
    with pytest.raises(
        TripSchemaError,
        match=r"^f.parquet: columns RateCodeID, ratecodeid all read as RatecodeID; expected one$",
    ):
        normalize_trips(ambiguous, taxi_type="green", source_name="f.parquet")


def test_nan_in_a_float_column_read_as_integers_is_a_missing_value() -> None:
    raw = raw_green(
        passenger_count=[1.0, float("nan")],
        RatecodeID=[float("nan"), 5.0],
        PULocationID=[74.0, float("nan")],
    )

    trips = normalize_trips(raw, taxi_type="green", source_name="f.parquet")

    assert trips["passenger_count"].to_list() == [1, None]
    assert trips["RatecodeID"].to_list() == [None, 5]
    assert trips["PULocationID"].to_list() == [74, None]


def test_a_float_too_large_for_its_integer_column_is_named() -> None:
    raw = raw_green(passenger_count=[1.0, 1e12])

    with pytest.raises(
        TripSchemaError,
        match=r"^f.parquet: column passenger_count has 1 value\(s\) that cannot be read as Int32 "
        r"\(source dtype Float64\)",
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
