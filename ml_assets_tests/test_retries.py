"""Step retries against a flaky TLC host on 127.0.0.1, and re-execution from failure.

Transient failures (5xx, timeouts) are retried by the step's RetryPolicy; failures no retry can heal
(bad content, an unpublished month, a bad zone lookup, a cache folder that cannot be written) fail
after one attempt, with a message naming the file and what is wrong.
"""

import io
import json
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from ml_assets.lib.sample_source import sample_raw_trips, sample_zones
from ml_assets.resources import build_resources
from ml_assets.resources.trip_source import TripSource
from ml_assets.settings import Settings
from ml_assets_tests.graph import raw_trips, taxi_zones, trip_features
from ml_assets_tests.http_fixtures import FileServer

JANUARY_FILE = "green_tripdata_2021-01.parquet"
JANUARY = f"/{JANUARY_FILE}"
DAY = "2021-01-05"


def month_file() -> bytes:
    buffer = io.BytesIO()
    pl.concat(
        [sample_raw_trips(date(2021, 1, 4)), sample_raw_trips(date(2021, 1, 5))]
    ).write_parquet(buffer)
    return buffer.getvalue()


def tlc_resources(server: FileServer, data_dir: Path) -> dict[str, object]:
    settings = Settings.from_env(
        {
            "ML_ASSETS_SOURCE": "tlc",
            "ML_ASSETS_DATA_DIR": str(data_dir),
            "ML_ASSETS_TLC_BASE_URL": server.base_url,
            "ML_ASSETS_TLC_ZONE_LOOKUP_URL": server.url("taxi_zone_lookup.csv"),
        }
    )
    return {
        **build_resources(settings),
        # One HTTP attempt per step attempt, so every failure reaches the step's RetryPolicy.
        "trip_source": TripSource(
            source="tlc",
            base_url=settings.tlc_base_url,
            zone_lookup_url=settings.tlc_zone_lookup_url,
            cache_dir=str(settings.cache_dir),
            max_attempts=1,
        ),
    }


def step_events(result: dg.ExecuteInProcessResult, event_type: dg.DagsterEventType) -> list:
    return [event for event in result.all_events if event.event_type == event_type]


@pytest.mark.slow
def test_a_source_failing_twice_then_answering_gives_a_successful_run_with_two_retries(
    tlc_server: FileServer, tmp_path: Path, instance: dg.DagsterInstance
):
    tlc_server.add_file(JANUARY_FILE, month_file())
    tlc_server.script(JANUARY, [503, 503])

    result = dg.materialize(
        [raw_trips],
        partition_key=DAY,
        resources=tlc_resources(tlc_server, tmp_path / "data"),
        instance=instance,
    )

    assert result.success
    assert len(step_events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)) == 2
    assert tlc_server.requests_for(JANUARY) == ["GET", "GET", "GET"]
    stored = pl.read_parquet(tmp_path / "data" / "assets" / "raw_trips" / f"{DAY}.parquet")
    assert stored.height == sample_raw_trips(date(2021, 1, 5)).height


@pytest.mark.slow
def test_a_source_that_keeps_failing_gives_a_failed_run_with_a_clear_error(
    tlc_server: FileServer, tmp_path: Path, instance: dg.DagsterInstance
):
    tlc_server.add_file(JANUARY_FILE, month_file())
    tlc_server.script(JANUARY, [503] * 10)

    result = dg.materialize(
        [raw_trips],
        partition_key=DAY,
        resources=tlc_resources(tlc_server, tmp_path / "data"),
        instance=instance,
        raise_on_error=False,
    )

    assert not result.success
    retries = step_events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)
    assert len(retries) == 3
    (failure,) = step_events(result, dg.DagsterEventType.STEP_FAILURE)
    error = failure.step_failure_data.error
    assert error.message.strip() == "Exceeded max_retries of 3"
    cause = error.cause or error.context
    assert cause.cls_name == "TransientTLCError"
    assert f"GET {tlc_server.base_url}{JANUARY} answered HTTP 503" in cause.message
    # Each attempt's error, shown in the run's log, says what went wrong and where.
    for retry in retries:
        attempt_error = retry.event_specific_data.error.cause
        assert attempt_error.cls_name == "TransientTLCError"
        assert f"GET {tlc_server.base_url}{JANUARY} answered HTTP 503" in attempt_error.message
    assert not (tmp_path / "data" / "assets" / "raw_trips").exists()


def test_an_unpublished_month_fails_at_once_without_retrying(
    tlc_server: FileServer, tmp_path: Path, instance: dg.DagsterInstance
):
    result = dg.materialize(
        [raw_trips],
        partition_key=DAY,
        resources=tlc_resources(tlc_server, tmp_path / "data"),
        instance=instance,
        raise_on_error=False,
    )

    assert not result.success
    assert step_events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY) == []
    (failure,) = step_events(result, dg.DagsterEventType.STEP_FAILURE)
    assert f"partition {DAY}: {tlc_server.base_url}{JANUARY} does not exist (HTTP 404)" in (
        failure.step_failure_data.error.message
    )


def ingest_job() -> dg.JobDefinition:
    """zones, trips and features of the TLC host in ML_ASSETS_TLC_BASE_URL (set by the test)."""
    settings = Settings.from_env()
    return dg.Definitions(
        assets=[taxi_zones, raw_trips, trip_features],
        resources={
            **build_resources(settings),
            "trip_source": TripSource(
                source="tlc",
                base_url=settings.tlc_base_url,
                zone_lookup_url=settings.tlc_zone_lookup_url,
                cache_dir=str(settings.cache_dir),
                max_attempts=1,
            ),
        },
        jobs=[dg.define_asset_job("ingest_job", executor_def=dg.in_process_executor)],
    ).resolve_job_def("ingest_job")


def materialized(result: dg.JobExecutionResult) -> set[str]:
    return {
        event.asset_key.to_user_string()
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
    }


def test_re_execution_from_failure_runs_only_what_failed(
    tlc_server: FileServer, tmp_path: Path, instance: dg.DagsterInstance, monkeypatch
):
    tlc_server.add_file("taxi_zone_lookup.csv", sample_zones().write_csv().encode())
    monkeypatch.setenv("ML_ASSETS_SOURCE", "tlc")
    monkeypatch.setenv("ML_ASSETS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ML_ASSETS_TLC_BASE_URL", tlc_server.base_url)
    monkeypatch.setenv("ML_ASSETS_TLC_ZONE_LOOKUP_URL", tlc_server.url("taxi_zone_lookup.csv"))
    job = dg.reconstructable(ingest_job)

    # TLC has not published January yet: zones succeed, trips fail (and are not retried).
    with dg.execute_job(job, instance=instance, tags={"dagster/partition": DAY}) as first:
        assert not first.success
        assert materialized(first) == {"taxi_zones"}
    tlc_server.add_file(JANUARY_FILE, month_file())
    with dg.execute_job(
        job,
        instance=instance,
        reexecution_options=dg.ReexecutionOptions.from_failure(first.run_id, instance),
        tags={"dagster/partition": DAY},  # as the UI's "Re-execute from failure" does
    ) as second:
        assert second.success
        assert materialized(second) == {"raw_trips", "trip_features"}
    assert (tmp_path / "data" / "assets" / "trip_features" / f"{DAY}.parquet").exists()


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """The description of the step's `dg.Failure`, as the UI shows it."""
    (failure,) = step_events(result, dg.DagsterEventType.STEP_FAILURE)
    assert failure.step_failure_data.error.cls_name == "Failure"
    return failure.step_failure_data.user_failure_data.description


def month_without(column: str) -> bytes:
    buffer = io.BytesIO()
    pl.read_parquet(io.BytesIO(month_file())).drop(column).write_parquet(buffer)
    return buffer.getvalue()


def test_a_month_that_breaks_the_schema_fails_after_one_attempt_and_is_not_cached(
    tlc_server: FileServer, tmp_path: Path, instance: dg.DagsterInstance
):
    tlc_server.add_file(JANUARY_FILE, month_without("DOLocationID"))

    result = dg.materialize(
        [raw_trips],
        partition_key=DAY,
        resources=tlc_resources(tlc_server, tmp_path / "data"),
        instance=instance,
        raise_on_error=False,
    )

    assert not result.success
    assert step_events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY) == []
    assert tlc_server.requests_for(JANUARY) == ["GET"]
    message = failure_message(result)
    assert message.startswith(
        f"partition {DAY}: {JANUARY_FILE}: required column(s) DOLocationID missing"
    )
    assert message.rstrip().endswith(
        f"(downloaded from {tlc_server.base_url}{JANUARY}, not cached)"
    )
    assert sorted(path.name for path in (tmp_path / "data" / "cache").iterdir()) == []


def test_a_cached_month_that_breaks_the_schema_is_dropped_and_the_next_run_recovers(
    tlc_server: FileServer, tmp_path: Path, instance: dg.DagsterInstance
):
    # A month cached by an earlier version, before downloads were checked.
    cache = tmp_path / "data" / "cache"
    cache.mkdir(parents=True)
    (cache / JANUARY_FILE).write_bytes(month_without("trip_distance"))
    (cache / "green_tripdata_2021-01.json").write_text(
        json.dumps({"url": tlc_server.url(JANUARY_FILE), "sha256": "0" * 64, "etag": None})
    )
    resources = tlc_resources(tlc_server, tmp_path / "data")

    failed = dg.materialize(
        [raw_trips], partition_key=DAY, resources=resources, instance=instance, raise_on_error=False
    )

    assert step_events(failed, dg.DagsterEventType.STEP_UP_FOR_RETRY) == []
    message = failure_message(failed)
    assert message.startswith(
        f"partition {DAY}: {JANUARY_FILE}: required column(s) trip_distance missing"
    )
    assert f"the cached copy {cache / JANUARY_FILE} was dropped" in message
    assert list(cache.iterdir()) == []
    assert tlc_server.requests_for(JANUARY) == ["HEAD"]  # which version? nothing downloaded

    # The source serves a good file: the next run downloads it and succeeds, no clean-up.
    tlc_server.add_file(JANUARY_FILE, month_file())
    recovered = dg.materialize(
        [raw_trips], partition_key=DAY, resources=resources, instance=instance
    )

    assert recovered.success
    assert tlc_server.requests_for(JANUARY) == ["HEAD", "GET"]
    stored = pl.read_parquet(tmp_path / "data" / "assets" / "raw_trips" / f"{DAY}.parquet")
    assert stored.height == sample_raw_trips(date(2021, 1, 5)).height


def test_a_header_only_zone_lookup_fails_after_one_attempt(
    tlc_server: FileServer, tmp_path: Path, instance: dg.DagsterInstance
):
    tlc_server.add_file("taxi_zone_lookup.csv", b"LocationID,Borough,Zone,service_zone\n")

    result = dg.materialize(
        [taxi_zones],
        resources=tlc_resources(tlc_server, tmp_path / "data"),
        instance=instance,
        raise_on_error=False,
    )

    assert step_events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY) == []
    assert tlc_server.requests_for("taxi_zone_lookup.csv") == ["GET"]
    assert failure_message(result).startswith(
        f"{tlc_server.url('taxi_zone_lookup.csv')}: the zone lookup has a header but no zones"
    )


def test_a_cache_folder_that_cannot_be_created_fails_after_one_attempt(
    tlc_server: FileServer, tmp_path: Path, instance: dg.DagsterInstance
):
    tlc_server.add_file(JANUARY_FILE, month_file())
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "cache").write_text("a file where the cache folder should be")

    result = dg.materialize(
        [raw_trips],
        partition_key=DAY,
        resources=tlc_resources(tlc_server, data_dir),
        instance=instance,
        raise_on_error=False,
    )

    assert step_events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY) == []
    message = failure_message(result)
    assert message.startswith(f"partition {DAY}: ")
    assert str(data_dir / "cache") in message
    assert tlc_server.requests_for(JANUARY) == []


@pytest.mark.slow
def test_refetch_source_downloads_the_month_again_and_keeps_unchanged_days(
    tlc_server: FileServer, tmp_path: Path, instance: dg.DagsterInstance
):
    tlc_server.add_file(JANUARY_FILE, month_file())
    resources = tlc_resources(tlc_server, tmp_path / "data")
    dg.materialize([raw_trips], partition_key=DAY, resources=resources, instance=instance)

    again = dg.materialize(
        [raw_trips],
        partition_key=DAY,
        resources=resources,
        instance=instance,
        run_config={"ops": {"raw_trips": {"config": {"refetch_source": True}}}},
    )

    assert tlc_server.requests_for(JANUARY) == ["GET", "GET"]
    (materialization,) = again.asset_materializations_for_node("raw_trips")
    # Same file, same checksum: the day's stored trips are kept.
    assert materialization.metadata["cached"].value is True
