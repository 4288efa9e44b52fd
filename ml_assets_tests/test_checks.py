"""Asset checks: each fails on the bad data it exists for and passes on good data; a failing
blocking check stops what is downstream of it in the same run."""

from datetime import date, datetime, timedelta
from typing import Any

import dagster as dg
import polars as pl
import pytest

from ml_assets.checks.model import duration_model_beats_baseline, feature_drift_vs_training_window
from ml_assets.checks.predictions import trip_duration_predictions_complete_and_plausible
from ml_assets.checks.raw_trips import (
    raw_trips_not_empty,
    raw_trips_null_rates,
    raw_trips_pickups_on_day,
    raw_trips_repeated_trips,
    raw_trips_schema,
)
from ml_assets.checks.trip_features import trip_features_dropped_share, trip_features_schema
from ml_assets.lib.features import build_trip_features
from ml_assets.lib.sample_source import sample_trips, sample_zones
from ml_assets.resources.trip_source import DayOfTrips, TripSource
from ml_assets.settings import Settings
from ml_assets_tests.conftest import range_tags
from ml_assets_tests.graph import (
    ASSET_CHECKS,
    TRAINING_WINDOW_DAYS,
    raw_trips,
    taxi_zones,
    trip_features,
)

DAY = "2021-01-05"
RAW_TRIPS_CHECK_NAMES = [
    "raw_trips_schema",
    "raw_trips_not_empty",
    "raw_trips_pickups_on_day",
    "raw_trips_repeated_trips",
    "raw_trips_null_rates",
]
ERROR = dg.AssetCheckSeverity.ERROR
WARN = dg.AssetCheckSeverity.WARN


@pytest.fixture(scope="module")
def trips() -> pl.DataFrame:
    return sample_trips(date.fromisoformat(DAY), "green")


@pytest.fixture(scope="module")
def features(trips: pl.DataFrame) -> pl.DataFrame:
    return build_trip_features(trips.lazy(), sample_zones().lazy()).collect()


def predictions_for(features: pl.DataFrame, minutes: float = 12.0) -> pl.DataFrame:
    return features.select(
        "trip_key", "pickup_datetime", "PULocationID", "DOLocationID", "trip_distance"
    ).with_columns(
        pl.lit(minutes).alias("predicted_duration_min"), pl.lit("4").alias("model_version")
    )


def test_raw_trip_checks_pass_on_a_sample_day(trips: pl.DataFrame) -> None:
    for check in (
        raw_trips_schema,
        raw_trips_not_empty,
        raw_trips_pickups_on_day,
        raw_trips_repeated_trips,
    ):
        assert check(raw_trips={DAY: trips}).passed, check.__name__
    assert raw_trips_null_rates(raw_trips={DAY: trips}).passed


def test_raw_trips_schema_fails_on_a_missing_column(trips: pl.DataFrame) -> None:
    result = raw_trips_schema(raw_trips={DAY: trips.drop("trip_distance")})
    assert (result.passed, result.severity) == (False, ERROR)
    assert result.description == f"{DAY}: column trip_distance missing"
    assert result.metadata["failing_days"].value == [DAY]


def test_raw_trips_not_empty_fails_on_an_empty_day(trips: pl.DataFrame) -> None:
    result = raw_trips_not_empty(raw_trips={DAY: trips.head(0), "2021-01-06": trips})
    assert (result.passed, result.severity) == (False, ERROR)
    assert result.description == f"{DAY}: no trips"


def test_pickups_of_another_day_fail(trips: pl.DataFrame) -> None:
    stray = trips.head(3).with_columns(pickup_datetime=pl.lit(datetime(2021, 1, 4, 23, 50)))
    result = raw_trips_pickups_on_day(raw_trips={DAY: pl.concat([trips, stray])})
    assert (result.passed, result.severity) == (False, ERROR)
    assert result.description == f"{DAY}: 3 pickup(s) outside the day"


def test_a_few_repeated_trips_warn_and_a_day_served_twice_is_an_error(
    trips: pl.DataFrame,
) -> None:
    other_day = "2021-01-06"
    few = raw_trips_repeated_trips(
        raw_trips={DAY: pl.concat([trips, trips.head(3)]), other_day: trips}
    )
    assert (few.passed, few.severity) == (False, WARN)
    assert few.description == (
        f"{DAY}: 3 of {trips.height + 3:,} trips ({3 / (trips.height + 3):.1%}) repeat another "
        "trip in full"
    )
    assert few.metadata["failing_days"].value == [DAY]
    assert few.metadata["repeated_trips"].value == 3
    assert few.metadata["error_above"].value == 0.01

    twice = raw_trips_repeated_trips(
        raw_trips={DAY: pl.concat([trips, trips]), other_day: pl.concat([trips, trips.head(3)])}
    )
    assert (twice.passed, twice.severity) == (False, ERROR)
    assert twice.description == (
        f"{DAY}: {trips.height:,} of {2 * trips.height:,} trips (50.0%) repeat another trip in "
        f"full; {other_day}: 3 of {trips.height + 3:,} trips "
        f"({3 / (trips.height + 3):.1%}) repeat another trip in full"
    )
    assert twice.metadata["max_repeated_share"].value == 0.5


def test_null_rates_of_required_columns_warn(trips: pl.DataFrame) -> None:
    # Half of the optional passenger counts missing is normal for TLC files: no warning.
    optional_gaps = trips.with_columns(
        passenger_count=pl.when(pl.int_range(pl.len()) % 2 == 0).then(None).otherwise(1)
    )
    assert raw_trips_null_rates(raw_trips={DAY: optional_gaps}).passed
    required_gaps = trips.with_columns(
        PULocationID=pl.when(pl.int_range(pl.len()) % 20 == 0).then(None).otherwise("PULocationID")
    )
    result = raw_trips_null_rates(raw_trips={DAY: required_gaps})
    assert (result.passed, result.severity) == (False, WARN)
    assert result.description == f"{DAY}: PULocationID 5.0% null"
    assert result.metadata["null_rates"].value["PULocationID"] == pytest.approx(0.05, abs=0.001)


def test_feature_checks_pass_on_sample_features(
    trips: pl.DataFrame, features: pl.DataFrame
) -> None:
    assert trip_features_schema(trip_features={DAY: features}).passed
    assert trip_features_dropped_share(
        trip_features={DAY: features}, raw_rows={DAY: trips.height}
    ).passed


def test_feature_schema_fails_on_a_target_out_of_range_and_nulls(features: pl.DataFrame) -> None:
    broken = features.with_columns(
        duration_min=pl.when(pl.int_range(pl.len()) == 0).then(75.0).otherwise("duration_min"),
        pickup_hour=pl.when(pl.int_range(pl.len()) == 1).then(None).otherwise("pickup_hour"),
    )
    result = trip_features_schema(trip_features={DAY: broken})
    assert (result.passed, result.severity) == (False, ERROR)
    assert "column pickup_hour: not_nullable failed in 1 row(s)" in result.description
    assert "column duration_min: in_range(1.0, 60.0) failed in 1 row(s) (e.g. 75.0)" in (
        result.description
    )


@pytest.mark.parametrize(
    ("kept_share", "passed", "severity"),
    [(0.9, True, WARN), (0.8, False, WARN), (0.4, False, ERROR)],
)
def test_dropped_share_warns_then_errors(
    trips: pl.DataFrame,
    features: pl.DataFrame,
    kept_share: float,
    passed: bool,
    severity: dg.AssetCheckSeverity,
) -> None:
    kept = features.head(int(trips.height * kept_share))
    result = trip_features_dropped_share(trip_features={DAY: kept}, raw_rows={DAY: trips.height})
    assert (result.passed, result.severity) == (passed, severity)
    assert result.metadata["dropped_share"].value == pytest.approx(1 - kept_share, abs=0.001)


def model_record(val_rmse: float, baseline_val_rmse: float) -> dict[str, Any]:
    return {
        "version": "4",
        "metrics": {"val_rmse": val_rmse, "baseline_val_rmse": baseline_val_rmse},
    }


def test_model_must_beat_the_naive_baseline() -> None:
    assert duration_model_beats_baseline(duration_model={DAY: model_record(5.1, 7.8)}).passed
    result = duration_model_beats_baseline(duration_model={DAY: model_record(8.2, 7.8)})
    assert (result.passed, result.severity) == (False, ERROR)
    assert result.description == (f"{DAY}: validation RMSE 8.200 is not below the baseline's 7.800")


def test_predictions_pass_when_complete_and_plausible(features: pl.DataFrame) -> None:
    result = trip_duration_predictions_complete_and_plausible(
        trip_duration_predictions={DAY: predictions_for(features)}, trip_features={DAY: features}
    )
    assert result.passed
    assert result.metadata["rows"].value == features.height


def test_missing_predictions_are_an_error(features: pl.DataFrame) -> None:
    result = trip_duration_predictions_complete_and_plausible(
        trip_duration_predictions={DAY: predictions_for(features).head(features.height - 5)},
        trip_features={DAY: features},
    )
    assert (result.passed, result.severity) == (False, ERROR)
    assert result.description == f"{DAY}: 5 feature row(s) without a prediction"


def test_the_first_day_of_the_loop_has_no_prediction_and_must_have_none(
    features: pl.DataFrame,
) -> None:
    first_day = date.fromisoformat(DAY)
    none = predictions_for(features).clear()
    assert trip_duration_predictions_complete_and_plausible(
        trip_duration_predictions={DAY: none}, trip_features={DAY: features}, first_day=first_day
    ).passed
    made_up = trip_duration_predictions_complete_and_plausible(
        trip_duration_predictions={DAY: predictions_for(features).head(3)},
        trip_features={DAY: features},
        first_day=first_day,
    )
    assert (made_up.passed, made_up.severity) == (False, ERROR)
    assert made_up.description == f"{DAY}: 3 prediction(s) for trips not in trip_features"


def test_a_few_implausible_predictions_warn_many_are_an_error(features: pl.DataFrame) -> None:
    def with_negatives(count: int) -> pl.DataFrame:
        return predictions_for(features).with_columns(
            predicted_duration_min=pl.when(pl.int_range(pl.len()) < count)
            .then(-2.0)
            .otherwise(pl.col("predicted_duration_min"))
        )

    few = trip_duration_predictions_complete_and_plausible(
        trip_duration_predictions={DAY: with_negatives(2)}, trip_features={DAY: features}
    )
    assert (few.passed, few.severity) == (False, WARN)
    assert "2 prediction(s)" in few.description and "outside 0.0..120.0 min" in few.description
    many = trip_duration_predictions_complete_and_plausible(
        trip_duration_predictions={DAY: with_negatives(features.height // 10)},
        trip_features={DAY: features},
    )
    assert (many.passed, many.severity) == (False, ERROR)


def test_drift_warns_when_the_day_differs_from_the_training_window() -> None:
    window_days = [date(2021, 1, 1) + timedelta(days=offset) for offset in range(4)]
    window = {
        day.isoformat(): build_trip_features(
            sample_trips(day, "green").lazy(), sample_zones().lazy()
        ).collect()
        for day in window_days
    }
    evaluated = "2021-01-05"
    day_features = build_trip_features(
        sample_trips(date.fromisoformat(evaluated), "green").lazy(), sample_zones().lazy()
    ).collect()
    stable = feature_drift_vs_training_window(
        model_evaluation={evaluated: {"date": evaluated}},
        trip_features={**window, evaluated: day_features},
        window_days=TRAINING_WINDOW_DAYS,
    )
    assert stable.passed
    assert set(stable.metadata["psi"].value[evaluated]) == {"trip_distance", "pickup_hour"}

    night_of_long_trips = day_features.with_columns(
        trip_distance=pl.col("trip_distance") * 3, pickup_hour=pl.lit(2, dtype=pl.Int8)
    )
    drifted = feature_drift_vs_training_window(
        model_evaluation={evaluated: {"date": evaluated}},
        trip_features={**window, evaluated: night_of_long_trips},
        window_days=TRAINING_WINDOW_DAYS,
    )
    assert (drifted.passed, drifted.severity) == (False, WARN)
    assert "on trip_distance" in drifted.description and "on pickup_hour" in drifted.description


class StrayPickupsSource(TripSource):
    """The sample source, but each day also holds trips picked up the evening before, as raw TLC
    month files do before they are cut into days."""

    def trips_for_day(self, day: date, taxi_type: str | None = None) -> DayOfTrips:
        real = super().trips_for_day(day, taxi_type)
        stray = real.trips.head(5).with_columns(
            pickup_datetime=pl.col("pickup_datetime") - timedelta(days=1),
            dropoff_datetime=pl.col("dropoff_datetime") - timedelta(days=1),
            trip_key=pl.concat_str(pl.lit("stray:"), pl.col("trip_key")),
        )
        return DayOfTrips(
            trips=pl.concat([real.trips, stray]),
            source_description=real.source_description,
            source_version=real.source_version,
            synthetic=real.synthetic,
            downloaded=real.downloaded,
        )


class ServedTwiceSource(TripSource):
    """The sample source, but each day holds every trip twice, as when a month is served twice."""

    def trips_for_day(self, day: date, taxi_type: str | None = None) -> DayOfTrips:
        real = super().trips_for_day(day, taxi_type)
        return DayOfTrips(
            trips=pl.concat([real.trips, real.trips]),
            source_description=real.source_description,
            source_version=real.source_version,
            synthetic=real.synthetic,
            downloaded=real.downloaded,
        )


def materialize_day(
    resources: dict[str, object], instance: dg.DagsterInstance
) -> dg.ExecuteInProcessResult:
    dg.materialize([taxi_zones], resources=resources, instance=instance)
    return dg.materialize(
        [taxi_zones, raw_trips, trip_features, *ASSET_CHECKS],
        selection=dg.AssetSelection.assets(raw_trips, trip_features),
        partition_key=DAY,
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )


def test_checks_pass_in_a_run_on_good_data(
    resources: dict[str, object], instance: dg.DagsterInstance
) -> None:
    result = materialize_day(resources, instance)
    assert result.success
    evaluations = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert evaluations == {
        "raw_trips_schema": True,
        "raw_trips_not_empty": True,
        "raw_trips_pickups_on_day": True,
        "raw_trips_repeated_trips": True,
        "raw_trips_null_rates": True,
        "trip_features_schema": True,
        "trip_features_dropped_share": True,
    }


def test_a_failing_blocking_check_stops_downstream_assets(
    resources: dict[str, object], instance: dg.DagsterInstance
) -> None:
    source: TripSource = resources["trip_source"]  # type: ignore[assignment]
    bad_resources = {**resources, "trip_source": StrayPickupsSource(**source.model_dump())}
    result = materialize_day(bad_resources, instance)
    assert not result.success
    (evaluation,) = [
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "raw_trips_pickups_on_day"
    ]
    assert not evaluation.passed
    assert evaluation.description == f"{DAY}: 5 pickup(s) outside the day"
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {"raw_trips"}
    succeeded = {e.step_key for e in result.get_step_success_events()}
    assert "raw_trips" in succeeded and "trip_features" not in succeeded
    assert not instance.get_latest_materialization_event(dg.AssetKey("trip_features"))


@pytest.mark.slow
def test_a_day_served_twice_fails_the_repeated_trips_check_and_nothing_downstream_runs(
    resources: dict[str, object], instance: dg.DagsterInstance
) -> None:
    source: TripSource = resources["trip_source"]  # type: ignore[assignment]
    served_twice = {**resources, "trip_source": ServedTwiceSource(**source.model_dump())}

    result = materialize_day(served_twice, instance)

    assert not result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    repeated = evaluations["raw_trips_repeated_trips"]
    assert (repeated.passed, repeated.severity) == (False, ERROR)
    rows = sample_trips(date.fromisoformat(DAY), "green").height
    assert repeated.description == (
        f"{DAY}: {rows:,} of {2 * rows:,} trips (50.0%) repeat another trip in full"
    )
    assert repeated.metadata["failing_days"].value == [DAY]
    # Only the repeats fail: the schema, emptiness and day checks pass on the doubled day.
    assert evaluations["raw_trips_schema"].passed
    assert evaluations["raw_trips_pickups_on_day"].passed
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {"raw_trips"}
    succeeded = {e.step_key for e in result.get_step_success_events()}
    assert "raw_trips" in succeeded and "trip_features" not in succeeded
    assert not instance.get_latest_materialization_event(dg.AssetKey("trip_features"))


RANGE = ["2021-01-04", "2021-01-05", "2021-01-06"]


def test_a_range_run_checks_every_day_of_its_range_in_one_evaluation_per_check(
    resources: dict[str, object], settings: Settings, instance: dg.DagsterInstance
) -> None:
    dg.materialize([taxi_zones], resources=resources, instance=instance)
    result = dg.materialize(
        [taxi_zones, raw_trips, trip_features, *ASSET_CHECKS],
        selection=dg.AssetSelection.assets(raw_trips, trip_features),
        resources=resources,
        instance=instance,
        tags=range_tags(RANGE[0], RANGE[-1]),
    )

    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 7
    for evaluation in evaluations:
        assert evaluation.passed
        # A check of the asset, not of one day: it names the days it covered.
        assert evaluation.partition is None
        assert evaluation.metadata["days"].value == f"{RANGE[0]}..{RANGE[-1]}"
        assert evaluation.metadata["day_count"].value == len(RANGE)
    (rows,) = [e for e in evaluations if e.check_name == "raw_trips_not_empty"]
    stored = sum(
        pl.read_parquet(settings.assets_dir / "raw_trips" / f"{day}.parquet").height
        for day in RANGE
    )
    assert rows.metadata["rows"].value == stored


def test_a_check_run_on_its_own_checks_the_latest_materialized_day(
    resources: dict[str, object], instance: dg.DagsterInstance
) -> None:
    assert materialize_day(resources, instance).success

    result = dg.materialize(
        [taxi_zones, raw_trips, trip_features, *ASSET_CHECKS],
        selection=dg.AssetSelection.checks_for_assets(raw_trips),
        resources=resources,
        instance=instance,
    )

    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert {e.check_name for e in evaluations} == set(RAW_TRIPS_CHECK_NAMES)
    assert {e.metadata["days"].value for e in evaluations} == {f"{DAY}..{DAY}"}


def test_checks_of_daily_runs_are_daily_and_checks_of_range_runs_are_of_the_asset() -> None:
    partitioned = {
        spec.key.name: spec.partitions_def is not None
        for checks in ASSET_CHECKS
        for spec in checks.check_specs
    }
    assert partitioned == {
        "raw_trips_schema": False,
        "raw_trips_not_empty": False,
        "raw_trips_pickups_on_day": False,
        "raw_trips_repeated_trips": False,
        "raw_trips_null_rates": False,
        "trip_features_schema": False,
        "trip_features_dropped_share": False,
        "duration_model_beats_baseline": False,
        "feature_drift_vs_training_window": True,
        "trip_duration_predictions_complete_and_plausible": True,
        "challenger_beats_champion": True,
        "challenger_beats_baseline": True,
    }
