"""Catch-up after downtime: which runs fill the missed days, in which order, bounded to a window,
never twice, and with TLC only for published months."""

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from ml_assets.lib.catch_up import (
    LoopState,
    Step,
    StepRuns,
    catch_up_window,
    days_between,
    plan_catch_up,
)
from ml_assets.partitions import DailyPartitioning
from ml_assets.resources import build_resources
from ml_assets.sensors.catch_up import build_catch_up_sensor
from ml_assets.settings import Settings, SettingsError
from ml_assets_tests.graph import ASSETS
from ml_assets_tests.http_fixtures import FileServer

D = date.fromisoformat
ALL = (
    "raw_trips",
    "trip_features",
    "duration_model",
    "model_evaluation",
    "trip_duration_predictions",
)


def _state(
    have: dict[str, Iterable[date]],
    first: str = "2026-10-01",
    newest: str = "2026-12-01",
    **changes: object,
) -> LoopState:
    materialized = {"taxi_zones": frozenset({D(first)})}
    materialized.update({asset: frozenset(days) for asset, days in have.items()})
    return LoopState(first_day=D(first), newest_day=D(newest), materialized=materialized, **changes)  # type: ignore[arg-type]


def _through(last: str, first: str = "2026-10-01") -> dict[str, list[date]]:
    return {asset: days_between(D(first), D(last)) for asset in ALL}


def _runs(plan: object) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(run.step.value, run.days, run.assets) for run in plan.runs]  # type: ignore[attr-defined]


# --- plain planning ---------------------------------------------------------------------------


def test_three_days_of_downtime_fill_oldest_first_each_evaluation_after_its_model() -> None:
    have = _through("2026-11-28")
    # Tick 1: nothing of 11-29..12-01 exists: one ingestion run over the three days, nothing else.
    plan = plan_catch_up(_state(have), catch_up_days=10, training_window_days=3)
    assert _runs(plan) == [("ingest", "2026-11-29..2026-12-01", ("raw_trips", "trip_features"))]
    assert plan.waiting[D("2026-11-29")] == "ingestion launched"

    # Tick 2: features exist. Two trainings (the cap), the oldest first; the evaluation of 11-29
    # only (it needs the model of 11-28, which exists); later days wait for it.
    for asset in ("raw_trips", "trip_features"):
        have[asset] += days_between(D("2026-11-29"), D("2026-12-01"))
    plan = plan_catch_up(_state(have), catch_up_days=10, training_window_days=3)
    assert _runs(plan) == [
        ("train", "2026-11-29", ("duration_model",)),
        ("train", "2026-11-30", ("duration_model",)),
        ("score", "2026-11-29", ("model_evaluation", "trip_duration_predictions")),
    ]
    assert plan.waiting[D("2026-12-01")] == "training queued behind earlier days"
    assert plan.waiting[D("2026-11-30")] == "evaluation waits for the evaluation of an earlier day"

    # Tick 3, while those runs are going: nothing is launched twice.
    running = {
        Step.train: StepRuns(running=frozenset({D("2026-11-29"), D("2026-11-30")})),
        Step.score: StepRuns(running=frozenset({D("2026-11-29")})),
    }
    plan = plan_catch_up(_state(have, steps=running), catch_up_days=10, training_window_days=3)
    assert _runs(plan) == []

    # Tick 4: those finished. The last model, and the evaluation of 11-30 (model 11-29 exists).
    have["duration_model"] += [D("2026-11-29"), D("2026-11-30")]
    have["model_evaluation"] += [D("2026-11-29")]
    have["trip_duration_predictions"] += [D("2026-11-29")]
    plan = plan_catch_up(_state(have), catch_up_days=10, training_window_days=3)
    assert _runs(plan) == [
        ("train", "2026-12-01", ("duration_model",)),
        ("score", "2026-11-30", ("model_evaluation", "trip_duration_predictions")),
    ]
    # Tick 5: the evaluation of 12-01 needs the model of 11-30 only (trained); 12-01's own model
    # is not needed by anything before tomorrow.
    have["model_evaluation"] += [D("2026-11-30")]
    have["trip_duration_predictions"] += [D("2026-11-30")]
    plan = plan_catch_up(_state(have), catch_up_days=10, training_window_days=3)
    assert _runs(plan) == [
        ("train", "2026-12-01", ("duration_model",)),
        ("score", "2026-12-01", ("model_evaluation", "trip_duration_predictions")),
    ]


def test_the_window_bounds_how_far_back_catch_up_goes() -> None:
    # A start date five years back and nothing materialized: only the last 14 days, and the
    # 7-day training window before them, are ingested (one run); nothing older is touched.
    plan = plan_catch_up(_state({}, first="2021-01-01"), catch_up_days=14, training_window_days=7)
    assert plan.window == days_between(D("2026-11-18"), D("2026-12-01"))
    assert _runs(plan) == [("ingest", "2026-11-11..2026-12-01", ("raw_trips", "trip_features"))]
    assert catch_up_window(D("2026-11-25"), D("2026-12-01"), 14)[0] == D("2026-11-25")


def test_the_first_day_is_scored_without_a_model_and_the_second_after_its_model() -> None:
    # A loop started on 11-25: its first day has no model before it, so its scoring (the records
    # saying so) waits for nothing; the next day waits for the model of the first.
    have = {asset: days_between(D("2026-11-25"), D("2026-12-01")) for asset in ALL[:2]}
    plan = plan_catch_up(_state(have, first="2026-11-25"), catch_up_days=10, training_window_days=3)
    assert _runs(plan) == [
        ("train", "2026-11-25", ("duration_model",)),
        ("train", "2026-11-26", ("duration_model",)),
        ("score", "2026-11-25", ("model_evaluation", "trip_duration_predictions")),
    ]
    assert plan.waiting[D("2026-11-26")] == "evaluation waits for the evaluation of an earlier day"


def test_only_missing_ranges_are_ingested_and_failures_or_other_runs_block_their_days() -> None:
    have = _through("2026-11-30")
    for asset in ("raw_trips", "trip_features"):
        have[asset] = [day for day in have[asset] if day not in (D("2026-11-20"), D("2026-11-21"))]
        have[asset].remove(D("2026-11-25"))
    plan = plan_catch_up(_state(have, newest="2026-11-30"), 15, 3)
    assert [run for run in _runs(plan) if run[0] == "ingest"] == [
        ("ingest", "2026-11-20..2026-11-21", ("raw_trips", "trip_features")),
        ("ingest", "2026-11-25", ("raw_trips", "trip_features")),
    ]
    # 11-25's ingestion failed and a backfill someone launched is working on 11-20..21.
    state = _state(
        have,
        newest="2026-11-30",
        steps={Step.ingest: StepRuns(failed={D("2026-11-25"): "run-9"})},
        busy_days=frozenset({D("2026-11-20"), D("2026-11-21")}),
    )
    plan = plan_catch_up(state, 15, 3)
    assert [run for run in _runs(plan) if run[0] == "ingest"] == []
    assert plan.waiting[D("2026-11-25")] == "ingestion failed (run run-9)"
    assert plan.waiting[D("2026-11-20")] == "ingestion running"


def test_a_failed_evaluation_stops_the_chain_but_not_predictions_of_evaluated_days() -> None:
    have = _through("2026-11-30")
    have["model_evaluation"] = [d for d in have["model_evaluation"] if d < D("2026-11-28")]
    have["trip_duration_predictions"] = [
        d for d in have["trip_duration_predictions"] if d < D("2026-11-27")
    ]
    state = _state(
        have, newest="2026-11-30", steps={Step.score: StepRuns(failed={D("2026-11-28"): "r"})}
    )
    plan = plan_catch_up(state, 10, 3)
    # 11-27 was evaluated but not predicted: its predictions alone; 11-28 failed: 11-29 waits.
    assert _runs(plan) == [("score", "2026-11-27", ("trip_duration_predictions",))]
    assert plan.waiting[D("2026-11-28")] == "scoring failed (run r)"
    assert plan.waiting[D("2026-11-29")] == "evaluation waits for the evaluation of an earlier day"


def test_catch_up_days_setting() -> None:
    assert Settings.from_env({}).catch_up_days == 35
    assert Settings.from_env({"ML_ASSETS_CATCH_UP_DAYS": "7"}).catch_up_days == 7
    with pytest.raises(SettingsError, match=r"^ML_ASSETS_CATCH_UP_DAYS='0': expected a whole"):
        Settings.from_env({"ML_ASSETS_CATCH_UP_DAYS": "0"})


# --- the sensor over a real instance ----------------------------------------------------------


def _materialize(instance: dg.DagsterInstance, assets: Iterable[str], days: Iterable[date]) -> None:
    for asset in assets:
        for day in days:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset, partition=day.isoformat())
            )


def _tick(
    sensor: dg.SensorDefinition,
    instance: dg.DagsterInstance,
    resources: dict[str, object],
    cursor: str | None = None,
) -> tuple[list[dg.RunRequest], str | None, str | None]:
    # The partitions of a run request are resolved against the code location's assets.
    definitions = dg.Definitions(assets=ASSETS, sensors=[sensor], resources=resources)
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        definitions=definitions,
        resources={"trip_source": resources["trip_source"]},
    )
    result = sensor.evaluate_tick(context)
    return list(result.run_requests or []), result.cursor, result.skip_message


def _requested(requests: list[dg.RunRequest]) -> list[tuple[object, ...]]:
    return [
        (
            request.tags["ml_assets/catch_up"],
            request.partition_key
            or "..".join(
                request.tags.get(tag, "")
                for tag in (
                    "dagster/asset_partition_range_start",
                    "dagster/asset_partition_range_end",
                )
            ),
            tuple(key.to_user_string() for key in request.asset_selection or ()),
        )
        for request in requests
    ]


def _back_after_downtime(
    instance: dg.DagsterInstance, days: DailyPartitioning
) -> dg.SensorDefinition:
    """The catch-up sensor of `days` (7-day window) when the daemon stopped after the loop of
    11-26 and comes back on 12-01 at 09:00 UTC."""
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    instance.report_runless_asset_event(dg.AssetMaterialization("taxi_zones"))
    _materialize(instance, ALL, days_between(D("2026-11-01"), D("2026-11-26")))
    return build_catch_up_sensor(days, catch_up_days=7, clock=lambda: now)


def test_the_sensor_after_four_days_of_downtime(
    instance: dg.DagsterInstance, resources: dict[str, object]
) -> None:
    sensor = _back_after_downtime(instance, DailyPartitioning.starting("2026-11-01", 3))

    requests, cursor, _ = _tick(sensor, instance, resources)
    assert _requested(requests) == [
        ("ingest", "2026-11-27..2026-11-30", ("raw_trips", "trip_features"))
    ]
    assert requests[0].run_key == "catch_up:ingest:raw_trips+trip_features:2026-11-27..2026-11-30"
    assert requests[0].tags["dagster/max_retries"] == "2"

    _materialize(
        instance, ("raw_trips", "trip_features"), days_between(D("2026-11-27"), D("2026-11-30"))
    )
    requests, cursor, _ = _tick(sensor, instance, resources, cursor)
    assert _requested(requests) == [
        ("train", "2026-11-27", ("duration_model",)),
        ("train", "2026-11-28", ("duration_model",)),
        ("score", "2026-11-27", ("model_evaluation", "trip_duration_predictions")),
    ]

    _materialize(instance, ("duration_model",), [D("2026-11-27"), D("2026-11-28")])
    _materialize(instance, ("model_evaluation", "trip_duration_predictions"), [D("2026-11-27")])
    requests, cursor, _ = _tick(sensor, instance, resources, cursor)
    assert _requested(requests) == [
        ("train", "2026-11-29", ("duration_model",)),
        ("train", "2026-11-30", ("duration_model",)),
        ("score", "2026-11-28", ("model_evaluation", "trip_duration_predictions")),
    ]

    # Everything through 11-30 done: nothing left to launch.
    _materialize(instance, ALL, days_between(D("2026-11-27"), D("2026-11-30")))
    requests, cursor, skip = _tick(sensor, instance, resources, cursor)
    assert requests == [] and skip == "window 2026-11-24..2026-11-30: launching nothing"


def test_a_historical_run_is_caught_up_to_its_last_day_only(
    instance: dg.DagsterInstance, resources: dict[str, object]
) -> None:
    days = DailyPartitioning.starting("2026-11-01", 3, end_date="2026-11-28")
    sensor = _back_after_downtime(instance, days)

    requests, _, _ = _tick(sensor, instance, resources)

    assert _requested(requests) == [
        ("ingest", "2026-11-27..2026-11-28", ("raw_trips", "trip_features"))
    ]


def test_with_tlc_the_window_ends_with_the_newest_published_month(
    tmp_path: Path, instance: dg.DagsterInstance, tlc_server: FileServer
) -> None:
    settings = Settings.from_env(
        {
            "ML_ASSETS_SOURCE": "tlc",
            "ML_ASSETS_DATA_DIR": str(tmp_path / "data"),
            "ML_ASSETS_TLC_BASE_URL": tlc_server.base_url,
        }
    )
    resources = build_resources(settings)
    tlc_server.add_file("green_tripdata_2026-10.parquet", b"published")
    days = DailyPartitioning.starting("2026-10-01", training_window_days=3)
    now = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    sensor = build_catch_up_sensor(days, catch_up_days=5, clock=lambda: now)
    instance.report_runless_asset_event(dg.AssetMaterialization("taxi_zones"))

    requests, cursor, _ = _tick(sensor, instance, resources)
    # November is not published: the window is the last five days of October, plus the
    # training window before it.
    assert _requested(requests) == [
        ("ingest", "2026-10-24..2026-10-31", ("raw_trips", "trip_features"))
    ]
    heads = len(tlc_server.requests_for("green_tripdata_2026-11.parquet"))
    assert heads == 1
    # The answers are remembered: the next tick asks nothing.
    _tick(sensor, instance, resources, cursor)
    assert len(tlc_server.requests_for("green_tripdata_2026-11.parquet")) == heads
    assert len(tlc_server.requests_for("green_tripdata_2026-10.parquet")) == 1


def test_catch_up_sensor_is_registered_and_off_by_default(settings: Settings) -> None:
    from ml_assets.definitions import build_definitions

    defs = build_definitions(settings)
    sensor = defs.get_sensor_def("catch_up_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert "35 days (ML_ASSETS_CATCH_UP_DAYS)" in (sensor.description or "")
    assert timedelta(seconds=sensor.minimum_interval_seconds or 0) == timedelta(seconds=30)
