"""The pandera schemas (trips, features, predictions) and the data-quality measurements."""

from datetime import date, datetime

import numpy as np
import polars as pl
import pytest

from ml_assets.lib.features import build_trip_features
from ml_assets.lib.quality import (
    PSI_WARN,
    REPEATED_SHARE_ERROR,
    dropped_share,
    feature_drift,
    implausible_predictions,
    null_rates,
    pickups_outside_day,
    population_stability_index,
    repeated_share,
    repeated_trip_problem,
    repeated_trips,
    repeated_trips_by_day,
)
from ml_assets.lib.sample_source import sample_trips, sample_zones
from ml_assets.lib.schemas import (
    FEATURE_FRAME_SCHEMA,
    PREDICTION_FRAME_SCHEMA,
    TRIP_FRAME_SCHEMA,
    schema_problems,
    schema_problems_by_key,
)
from ml_assets.lib.trip_schema import TRIP_SCHEMA, normalize_trips
from ml_assets_tests.conftest import SHARED_TLC_DIR

DAY = date(2021, 1, 5)


@pytest.fixture(scope="module")
def trips() -> pl.DataFrame:
    return sample_trips(DAY, "green")


@pytest.fixture(scope="module")
def features(trips: pl.DataFrame) -> pl.DataFrame:
    return build_trip_features(trips.lazy(), sample_zones().lazy()).collect()


def problems(schema: object, frame: pl.DataFrame) -> list[str]:
    return [str(problem) for problem in schema_problems(schema, frame)]


def test_sample_trips_and_their_features_match_the_schemas(
    trips: pl.DataFrame, features: pl.DataFrame
) -> None:
    assert problems(TRIP_FRAME_SCHEMA, trips) == []
    assert problems(FEATURE_FRAME_SCHEMA, features) == []
    assert list(TRIP_FRAME_SCHEMA.columns) == list(TRIP_SCHEMA)


def test_real_tlc_month_normalizes_into_the_trip_schema() -> None:
    path = SHARED_TLC_DIR / "green_tripdata_2021-01.parquet"
    if not path.exists():
        pytest.skip(f"real TLC file not available at {path}")
    trips = normalize_trips(pl.read_parquet(path), taxi_type="green", source_name=path.name)
    assert trips.height == 76518
    assert problems(TRIP_FRAME_SCHEMA, trips) == []


def test_trip_schema_names_missing_columns_wrong_dtypes_and_missing_keys(
    trips: pl.DataFrame,
) -> None:
    broken = trips.head(3).with_columns(
        pl.col("PULocationID").cast(pl.Int64),
        trip_key=pl.when(pl.int_range(pl.len()) == 1).then(None).otherwise("trip_key"),
    )
    assert problems(TRIP_FRAME_SCHEMA, broken.drop("fare_amount")) == [
        "column fare_amount missing",
        "column trip_key: not_nullable failed in 1 row(s) (e.g. None)",
        "column PULocationID has dtype Int64, expected Int32",
    ]
    # A repeated trip is not a schema problem: the repeated-trips check measures it, with a
    # tolerance for a few.
    assert problems(TRIP_FRAME_SCHEMA, pl.concat([trips, trips.head(1)])) == []
    assert problems(TRIP_FRAME_SCHEMA, trips.with_columns(pl.lit(1).alias("extra"))) == [
        "unexpected column extra"
    ]


def test_feature_schema_rejects_nulls_and_targets_outside_1_to_60(features: pl.DataFrame) -> None:
    broken = features.head(4).with_columns(
        duration_min=pl.Series([0.5, 61.0, 10.0, 12.0]),
        pu_borough=pl.Series(["Queens", None, "Bronx", "Bronx"]),
    )
    assert problems(FEATURE_FRAME_SCHEMA, broken) == [
        "column pu_borough: not_nullable failed in 1 row(s) (e.g. None)",
        "column duration_min: in_range(1.0, 60.0) failed in 2 row(s) (e.g. 0.5, 61.0)",
    ]


def test_days_validated_together_report_each_problem_on_its_own_day(
    features: pl.DataFrame,
) -> None:
    days = {f"2021-01-0{n}": features.slice(5 * n, 5) for n in range(1, 6)}
    days["2021-01-02"] = days["2021-01-02"].with_columns(
        duration_min=pl.Series([0.5, 61.0, 10.0, 12.0, 13.0])
    )
    days["2021-01-04"] = days["2021-01-04"].drop("pickup_hour")
    days["2021-01-05"] = days["2021-01-05"].with_columns(
        trip_distance=pl.Series([1.0, None, 2.0, 3.0, 4.0])
    )
    by_day = schema_problems_by_key(FEATURE_FRAME_SCHEMA, days)

    assert {day: [str(problem) for problem in found] for day, found in by_day.items()} == {
        "2021-01-02": [
            "column duration_min: in_range(1.0, 60.0) failed in 2 row(s) (e.g. 0.5, 61.0)"
        ],
        "2021-01-04": ["column pickup_hour missing"],
        "2021-01-05": ["column trip_distance: not_nullable failed in 1 row(s) (e.g. None)"],
    }
    # The same findings as validating each day on its own.
    for day, frame in days.items():
        assert by_day.get(day, []) == schema_problems(FEATURE_FRAME_SCHEMA, frame)
    assert schema_problems_by_key(FEATURE_FRAME_SCHEMA, {"2021-01-01": features}) == {}
    # A trip stored under two days is counted twice: both days are named.
    twice = schema_problems_by_key(
        FEATURE_FRAME_SCHEMA, {"2021-01-01": features.head(2), "2021-01-02": features.slice(1, 2)}
    )
    assert [problem.rule for found in twice.values() for problem in found] == [
        "field_uniqueness",
        "field_uniqueness",
    ]
    assert list(twice) == ["2021-01-01", "2021-01-02"]


def test_prediction_schema_and_implausible_values() -> None:
    predictions = pl.DataFrame(
        {
            "trip_key": ["a", "b", "c"],
            "pickup_datetime": [datetime(2021, 1, 5, hour) for hour in (8, 9, 10)],
            "PULocationID": pl.Series([1, 2, 3], dtype=pl.Int32),
            "DOLocationID": pl.Series([3, 4, 5], dtype=pl.Int32),
            "trip_distance": [1.0, 2.0, 3.0],
            "predicted_duration_min": [12.5, 480.0, float("nan")],
            "model_version": ["3", "3", "3"],
        }
    )
    # pandera counts NaN as missing: a NaN prediction breaks the schema itself.
    assert problems(PREDICTION_FRAME_SCHEMA, predictions) == [
        "column predicted_duration_min: not_nullable failed in 1 row(s) (e.g. NaN)"
    ]
    assert implausible_predictions(predictions) == 2
    assert problems(PREDICTION_FRAME_SCHEMA, predictions.head(2)) == []
    assert problems(PREDICTION_FRAME_SCHEMA, predictions.head(2).drop("model_version")) == [
        "column model_version missing"
    ]


def test_null_rates_pickups_outside_the_day_and_dropped_share(trips: pl.DataFrame) -> None:
    with_gaps = trips.head(10).with_columns(
        trip_distance=pl.when(pl.int_range(pl.len()) < 3).then(None).otherwise("trip_distance")
    )
    assert null_rates(with_gaps, ["trip_distance", "PULocationID"]) == {
        "trip_distance": 0.3,
        "PULocationID": 0.0,
    }
    assert null_rates(trips.head(0), ["trip_distance"]) == {"trip_distance": 0.0}
    assert pickups_outside_day(trips, DAY) == 0
    stray = trips.head(2).with_columns(pickup_datetime=pl.lit(datetime(2020, 12, 31, 23)))
    assert pickups_outside_day(pl.concat([trips, stray]), DAY) == 2
    assert dropped_share(200, 150) == 0.25
    assert dropped_share(0, 0) == 0.0


def test_repeated_trips_are_counted_per_day_and_named_above_the_tolerance(
    trips: pl.DataFrame,
) -> None:
    assert (
        repeated_trips(trips),
        repeated_share(trips),
        repeated_trip_problem(trips, source_name="f"),
    ) == (
        0,
        0.0,
        None,
    )
    next_day = trips.head(10).with_columns(
        pl.col("pickup_datetime") + pl.duration(days=1), trip_key=pl.col("trip_key") + "-next"
    )
    month = pl.concat([trips, next_day, next_day.head(4), trips.head(1)])
    assert repeated_trips(month) == 5
    assert repeated_trips_by_day(month) == {"2021-01-06": 4, "2021-01-05": 1}
    # 5 of trips.height + 15 is well under 1%: tolerated.
    assert repeated_trip_problem(month, source_name="f") is None

    served_twice = pl.concat([month, month])
    share = (served_twice.height - month.height + 5) / served_twice.height
    assert share > REPEATED_SHARE_ERROR
    assert repeated_trip_problem(served_twice, source_name="green_tripdata_2021-01.parquet") == (
        f"green_tripdata_2021-01.parquet: {served_twice.height - month.height + 5:,} of "
        f"{served_twice.height:,} trips ({share:.1%}) repeat another trip in full (same trip_key), "
        "more than the 1% tolerated: the source served trips twice; repeated on "
        f"2021-01-05 ({trips.height + 2:,}), 2021-01-06 (18)"
    )
    assert repeated_trips_by_day(trips.head(0)) == {}
    assert repeated_share(trips.head(0)) == 0.0


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(0)
    window = rng.normal(3, 1, 20_000)
    edges = np.quantile(window, np.linspace(0, 1, 11)[1:-1])
    assert population_stability_index(window, rng.normal(3, 1, 5_000), edges) < 0.01
    assert population_stability_index(window, rng.normal(4.5, 1, 5_000), edges) > PSI_WARN


def test_feature_drift_sees_a_day_of_long_night_trips(features: pl.DataFrame) -> None:
    stable = feature_drift(features, features)
    assert stable == {"trip_distance": 0.0, "pickup_hour": 0.0}
    shifted = features.with_columns(
        trip_distance=pl.col("trip_distance") * 4, pickup_hour=pl.lit(3, dtype=pl.Int8)
    )
    drift = feature_drift(shifted, features)
    assert drift["trip_distance"] > PSI_WARN
    assert drift["pickup_hour"] > PSI_WARN
