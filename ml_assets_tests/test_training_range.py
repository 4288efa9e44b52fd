"""A backfill of `duration_model` trains its days in one run: each day its own model, registered
version, nested MLflow run and materialization metadata."""

import json
from datetime import date, datetime

import dagster as dg
import polars as pl
import pytest
from mlflow import MlflowClient

from ml_assets.assets import training
from ml_assets.lib.day_model import windows_read_together
from ml_assets.lib.features import FEATURE_SCHEMA
from ml_assets.settings import Settings
from ml_assets_tests.conftest import range_tags
from ml_assets_tests.graph import ASSET_CHECKS, WITHOUT_PREDICTIONS, duration_model

DAYS = ["2021-01-03", "2021-01-04", "2021-01-05"]


def materialize_features_through(
    last: str, resources: dict[str, object], instance: dg.DagsterInstance
) -> None:
    """The zones, and raw_trips and trip_features from the first day through `last`."""
    dg.materialize(
        WITHOUT_PREDICTIONS, selection=["taxi_zones"], resources=resources, instance=instance
    )
    dg.materialize(
        WITHOUT_PREDICTIONS,
        selection=["raw_trips", "trip_features"],
        resources=resources,
        instance=instance,
        tags=range_tags("2021-01-01", last),
    )


def test_a_backfill_trains_all_its_days_in_one_run() -> None:
    # Every day's model lands at once, so the backfill daemon requests each later day's scoring,
    # gate, decision and predictions together, in one run per day.
    assert duration_model.backfill_policy == dg.BackfillPolicy.single_run()


def test_a_range_reads_its_features_a_few_days_at_a_time_each_with_its_whole_window() -> None:
    pickups = [datetime(2021, 1, day, 12) for day in range(1, 8)]
    trip_features = pl.LazyFrame({"pickup_datetime": pickups, "trip": range(1, 8)})
    days = [date(2021, 1, 4), date(2021, 1, 5), date(2021, 1, 6)]

    read = list(windows_read_together(trip_features, days, window_days=3, at_once=2))

    # Each day's frame holds its whole three-day window, and nothing after its group.
    assert [(day.isoformat(), features["trip"].to_list()) for day, features in read] == [
        ("2021-01-04", [2, 3, 4, 5]),
        ("2021-01-05", [2, 3, 4, 5]),
        ("2021-01-06", [4, 5, 6]),
    ]


@pytest.mark.slow
def test_a_range_run_trains_and_registers_each_day_on_its_own(
    resources: dict[str, object],
    instance: dg.DagsterInstance,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    materialize_features_through(DAYS[-1], resources, instance)
    # Two reads of the features for three days: the second starts a new window.
    monkeypatch.setattr(training, "DAYS_IN_MEMORY", 2)

    result = dg.materialize(
        [*WITHOUT_PREDICTIONS, *ASSET_CHECKS],
        selection=["duration_model"],
        resources=resources,
        instance=instance,
        tags=range_tags(DAYS[0], DAYS[-1]),
    )

    assert result.success
    events = {
        event.materialization.partition: event.materialization.metadata
        for event in result.get_asset_materialization_events()
    }
    assert sorted(events) == DAYS
    versions = [events[day]["model_version"].value for day in DAYS]
    assert versions == ["1", "2", "3"]  # trained, and registered, in date order
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    day_runs = {}
    for day in DAYS:
        stored = json.loads((settings.assets_dir / "duration_model" / f"{day}.json").read_text())
        assert stored["version"] == events[day]["model_version"].value
        # Each day trains on its own window, ending on the day.
        assert stored["window_end"] == day
        assert events[day]["window"].value == f"{stored['window_start']}..{day}"
        assert events[day]["dagster/row_count"].value == stored["metrics"]["train_rows"]
        version = client.get_model_version(settings.model_name, stored["version"])
        assert version.tags["trained_through"] == day
        day_runs[day] = client.get_run(version.run_id)
    assert len({events[day]["dagster/row_count"].value for day in DAYS}) == len(DAYS)
    # One evaluation of the check for the run, naming its days.
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "duration_model_beats_baseline"
    assert check.metadata["days"].value == f"{DAYS[0]}..{DAYS[-1]}"
    assert check.metadata["day_count"].value == len(DAYS)
    # One MLflow run per day, nested in the run of the Dagster run.
    parents = {run.data.tags["mlflow.parentRunId"] for run in day_runs.values()}
    assert len(parents) == 1
    parent = client.get_run(parents.pop())
    assert parent.data.tags["dagster_run_id"] == result.run_id
    assert parent.info.status == "FINISHED"
    for day, run in day_runs.items():
        assert run.info.status == "FINISHED"
        assert run.data.tags["dagster_partition"] == day
        assert run.data.params["window_end"] == day
        assert run.data.metrics["val_rmse"] == events[day]["val_rmse"].value


@pytest.mark.slow
def test_a_day_whose_window_holds_no_trips_fails_the_range_at_once_naming_it(
    resources: dict[str, object], instance: dg.DagsterInstance, settings: Settings
) -> None:
    materialize_features_through("2021-01-02", resources, instance)
    # A day of trip_features without a single trip (every trip of the day dropped by cleaning).
    pl.DataFrame(schema=FEATURE_SCHEMA).write_parquet(
        settings.assets_dir / "trip_features" / "2021-01-03.parquet"
    )

    result = dg.materialize(
        WITHOUT_PREDICTIONS,
        selection=["duration_model"],
        resources=resources,
        instance=instance,
        tags=range_tags("2021-01-02", "2021-01-03"),
        # One-day windows: 2021-01-02 trains on its own trips, 2021-01-03 has none.
        run_config={"ops": {"duration_model": {"config": {"window_days": 1}}}},
        raise_on_error=False,
    )

    assert not result.success
    # Waiting cannot add trips to the day: no retry, which would train 2021-01-02 again.
    retries = [
        e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
    ]
    assert retries == []
    (failure,) = result.get_step_failure_events()
    assert failure.step_failure_data.error.message.startswith(
        "dagster._core.definitions.events.Failure: partition 2021-01-03: the 1-day training "
        "window (2021-01-03..2021-01-03) holds 0 trip_features row(s); at least 2 are needed"
    )
    versions = MlflowClient(tracking_uri=settings.mlflow_tracking_uri).search_model_versions(
        f"name = '{settings.model_name}'"
    )
    assert [version.tags["trained_through"] for version in versions] == ["2021-01-02"]
