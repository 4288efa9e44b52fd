"""Jobs, their retry and concurrency settings, and which run each schedule tick asks for."""

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from ml_assets.definitions import build_definitions
from ml_assets.resources.trip_source import TripSource
from ml_assets.retry_policies import mlflow_retry, network_retry
from ml_assets.settings import Settings
from ml_assets_tests.graph import raw_trips, taxi_zones, trip_features
from ml_assets_tests.http_fixtures import FileServer

SETTINGS = {"ML_ASSETS_SOURCE": "sample"}
defs = build_definitions(Settings.from_env(SETTINGS))
daily_schedule = defs.get_schedule_def("daily_schedule")
training_schedule = defs.get_schedule_def("training_schedule")


def asset_keys(job_name: str) -> set[str]:
    job = defs.resolve_job_def(job_name)
    return {key.to_user_string() for key in job.asset_layer.executable_asset_keys}


def test_the_daily_job_runs_one_day_of_the_loop_and_retries_crashed_runs():
    assert asset_keys("daily_job") == {
        "raw_trips",
        "trip_features",
        "model_evaluation",
        "trip_duration_predictions",
    }
    assert defs.resolve_job_def("daily_job").tags == {
        "dagster/max_retries": "2",
        "dagster/retry_strategy": "FROM_FAILURE",
        "dagster/retry_on_asset_or_op_failure": "false",
    }
    assert asset_keys("training_job") == {"duration_model"}
    assert asset_keys("ingestion_job") == {"raw_trips", "trip_features"}
    assert "ml_loop_job" in {job.name for job in defs.resolve_all_job_defs()}


def test_network_and_mlflow_steps_retry_with_jittered_exponential_backoff():
    for name in ("taxi_zones", "raw_trips"):
        assert defs.resolve_assets_def(name).op.retry_policy == network_retry
    for name in ("duration_model", "model_evaluation", "trip_duration_predictions"):
        assert defs.resolve_assets_def(name).op.retry_policy == mlflow_retry
    for policy in (network_retry, mlflow_retry):
        assert policy.backoff == dg.Backoff.EXPONENTIAL
        assert policy.jitter == dg.Jitter.PLUS_MINUS


def test_ingestion_backfills_in_one_run_and_training_is_limited_by_a_pool():
    for name in ("raw_trips", "trip_features"):
        assert defs.resolve_assets_def(name).backfill_policy == dg.BackfillPolicy.single_run()
    assert defs.resolve_assets_def("duration_model").op.pool == "training"


def tick(schedule: dg.ScheduleDefinition, at: datetime, **context_args):
    with dg.build_schedule_context(
        scheduled_execution_time=at, repository_def=defs.get_repository_def(), **context_args
    ) as context:
        return schedule.evaluate_tick(context)


def test_the_daily_schedule_runs_the_daily_job_each_morning_for_the_day_before(
    tmp_path: Path, instance: dg.DagsterInstance
):
    sample = TripSource(source="sample", cache_dir=str(tmp_path))

    result = tick(
        daily_schedule,
        datetime(2021, 3, 1, 5, 0, tzinfo=UTC),
        resources={"trip_source": sample},
        instance=instance,
    )

    (request,) = result.run_requests
    assert daily_schedule.job_name == "daily_job"
    assert daily_schedule.cron_schedule == "0 5 * * *"
    assert request.partition_key == "2021-02-28"
    assert request.run_key == "daily_job:2021-02-28"


def test_the_daily_schedule_skips_days_whose_tlc_month_is_not_published(
    tlc_server: FileServer, tmp_path: Path, instance: dg.DagsterInstance
):
    tlc = TripSource(
        source="tlc", base_url=tlc_server.base_url, cache_dir=str(tmp_path), max_attempts=1
    )
    tlc_server.add_file("green_tripdata_2021-01.parquet", b"published")

    unpublished = tick(
        daily_schedule,
        datetime(2021, 2, 2, 5, tzinfo=UTC),
        resources={"trip_source": tlc},
        instance=instance,
    )
    published = tick(
        daily_schedule,
        datetime(2021, 1, 20, 5, tzinfo=UTC),
        resources={"trip_source": tlc},
        instance=instance,
    )

    assert unpublished.run_requests == []
    assert unpublished.skip_message == (
        "2021-02-01: TLC has not published green_tripdata_2021-02.parquet yet; "
        "tlc_publication_sensor ingests it when it appears"
    )
    assert [request.partition_key for request in published.run_requests] == ["2021-01-19"]
    assert tlc_server.requests_for("/green_tripdata_2021-01.parquet") == ["HEAD"]


def test_the_training_schedule_trains_the_day_before_once_its_features_exist(
    resources: dict[str, object], instance: dg.DagsterInstance
):
    morning = datetime(2021, 1, 6, 6, 0, tzinfo=UTC)
    before = tick(training_schedule, morning, instance=instance)
    dg.materialize([taxi_zones], resources=resources, instance=instance)
    dg.materialize(
        [raw_trips, trip_features, taxi_zones],
        selection=["raw_trips", "trip_features"],
        partition_key="2021-01-05",
        resources=resources,
        instance=instance,
    )

    after = tick(training_schedule, morning, instance=instance)

    assert before.run_requests == []
    assert before.skip_message.startswith("trip_features for 2021-01-05 is not materialized yet")
    (request,) = after.run_requests
    assert training_schedule.job_name == "training_job"
    assert request.partition_key == "2021-01-05"


def test_the_retraining_cadence_is_a_setting():
    assert training_schedule.cron_schedule == "0 6 * * *"
    mondays = build_definitions(
        Settings.from_env({**SETTINGS, "ML_ASSETS_RETRAIN_CRON": "0 6 * * 1"})
    )
    assert mondays.get_schedule_def("training_schedule").cron_schedule == "0 6 * * 1"
    with pytest.raises(ValueError, match="ML_ASSETS_RETRAIN_CRON='every day'"):
        Settings.from_env({"ML_ASSETS_RETRAIN_CRON": "every day"})


def test_ticks_before_the_first_partition_skip():
    result = tick(training_schedule, datetime(2021, 1, 1, 6, tzinfo=UTC))
    assert result.skip_message == "2020-12-31 is before the first partition (2021-01-01)"


def test_a_historical_run_has_no_days_after_its_end_date_and_its_ticks_skip():
    historical = build_definitions(
        Settings.from_env({**SETTINGS, "ML_ASSETS_END_DATE": "2021-01-07"})
    )
    daily = historical.resolve_job_def("daily_job")
    assert daily.partitions_def is not None
    assert daily.partitions_def.get_partition_keys() == [f"2021-01-0{day}" for day in range(1, 8)]

    result = tick(
        historical.get_schedule_def("training_schedule"), datetime(2026, 12, 3, 6, tzinfo=UTC)
    )

    assert result.run_requests == []
    assert (
        result.skip_message
        == "2026-12-02 is after the last partition (2021-01-07, ML_ASSETS_END_DATE)"
    )


def test_the_daily_schedule_skips_a_day_whose_predictions_exist(
    tmp_path: Path, instance: dg.DagsterInstance
):
    sample = TripSource(source="sample", cache_dir=str(tmp_path))
    instance.report_runless_asset_event(
        dg.AssetMaterialization("trip_duration_predictions", partition="2021-02-28")
    )

    result = tick(
        daily_schedule,
        datetime(2021, 3, 1, 5, 0, tzinfo=UTC),
        resources={"trip_source": sample},
        instance=instance,
    )

    assert result.run_requests == []
    assert result.skip_message == (
        "2021-02-28: trip_duration_predictions already exist (made by the catch-up sensor or a "
        "backfill); nothing to run"
    )
