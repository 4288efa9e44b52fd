"""Alert sensors evaluated against an instance holding real runs: a failing run, succeeding daily
and training runs, a run that succeeded with a failed check, and model evaluations. Messages go
to a real JSON webhook on 127.0.0.1; a second evaluation must send nothing new."""

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import dagster as dg
import polars as pl
import pytest

from ml_assets.definitions import build_definitions
from ml_assets.jobs import jobs
from ml_assets.lib.rmse_trend import trailing_mean
from ml_assets.resources.notifier import Notifier
from ml_assets.resources.trip_source import DayOfTrips, TripSource
from ml_assets.sensors.alerts import (
    build_alert_sensors,
    failed_check_alert,
    run_failure_alert,
    run_success_alert,
)
from ml_assets.sensors.run_events import job_label, run_partition
from ml_assets.sensors.success_alerts import SUCCESS_ALERT_JOBS
from ml_assets.settings import Settings
from ml_assets_tests.alert_receivers import WebhookServer, webhook_server
from ml_assets_tests.graph import ASSET_CHECKS, ASSETS, raw_trips, taxi_zones, trip_features
from ml_assets_tests.test_checks import StrayPickupsSource

UI = "http://dagster.example:3000"
DAY = "2021-01-05"


class GapsInDistanceSource(TripSource):
    """The sample source with trip distance missing on one trip in ten."""

    def trips_for_day(self, day: date, taxi_type: str | None = None) -> DayOfTrips:
        real = super().trips_for_day(day, taxi_type)
        gaps = real.trips.with_columns(
            trip_distance=pl.when(pl.int_range(pl.len()) % 10 == 0)
            .then(None)
            .otherwise("trip_distance")
        )
        return DayOfTrips(gaps, real.source_description, real.source_version, True, False)


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    with webhook_server() as server:
        yield server


@pytest.fixture
def alert_resources(resources: dict[str, object], webhook: WebhookServer) -> dict[str, object]:
    notifier = Notifier(urls=f"json://{webhook.base_url}/alerts", ui_url=UI, backoff_seconds=0.01)
    return {**resources, "notifier": notifier}


ALERT_SENSORS = build_alert_sensors(
    Settings.from_env({"ML_ASSETS_SOURCE": "sample", "ML_ASSETS_DATA_DIR": "unused"})
)
model_quality_regression_alert = next(
    sensor for sensor in ALERT_SENSORS if sensor.name == "model_quality_regression_alert"
)


def definitions(resources: dict[str, object]) -> dg.Definitions:
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=ASSET_CHECKS,
        jobs=jobs,
        sensors=ALERT_SENSORS,
        resources=resources,
    )


class SensorRunner:
    """Evaluates sensors the way the daemon does: each tick starts from the stored cursor, in
    the code location's repository (Dagster's run status sensors skip runs of other origins,
    in-process and CLI runs included, whose origin is none)."""

    def __init__(self, instance: dg.DagsterInstance, defs: dg.Definitions, resources: dict) -> None:
        self.instance, self.defs, self.resources = instance, defs, resources
        self.cursors: dict[str, str | None] = {}

    def tick(self, sensor: dg.SensorDefinition) -> None:
        context = dg.build_sensor_context(
            instance=self.instance,
            definitions=self.defs,
            repository_name=self.defs.get_repository_def().name,
            cursor=self.cursors.get(sensor.name),
            # Sensors use only the notifier (the MLflow resources need a run to start).
            resources={"notifier": self.resources["notifier"]},
        )
        self.cursors[sensor.name] = sensor.evaluate_tick(context).cursor

    def tick_all(self) -> None:
        for sensor in ALERT_SENSORS:
            self.tick(sensor)


def failed_check_evaluations(instance: dg.DagsterInstance) -> list[Any]:
    records = instance.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    )
    evaluations = [r.event_log_entry.dagster_event.asset_check_evaluation_data for r in records]
    return [evaluation for evaluation in evaluations if not evaluation.passed]


def test_each_event_is_announced_once(
    instance: dg.DagsterInstance,
    alert_resources: dict[str, object],
    webhook: WebhookServer,
) -> None:
    defs = definitions(alert_resources)
    sensors = SensorRunner(instance, defs, alert_resources)
    sensors.tick_all()  # first ticks: start from now, announce nothing
    assert webhook.posts == []

    # Day 1 ingested ad hoc; its model trained by training_job; day 2 run by daily_job.
    dg.materialize([taxi_zones], resources=alert_resources, instance=instance)
    dg.materialize(
        [taxi_zones, raw_trips, trip_features],
        selection=[raw_trips, trip_features],
        partition_key="2021-01-01",
        resources=alert_resources,
        instance=instance,
    )
    training = defs.resolve_job_def("training_job").execute_in_process(
        partition_key="2021-01-01", instance=instance
    )
    daily = defs.resolve_job_def("daily_job").execute_in_process(
        partition_key="2021-01-02", instance=instance
    )
    # Day 2's promotion decision, as the `promote_evaluated_day` sensor launches it.
    promotion = defs.resolve_job_def("promotion_job").execute_in_process(
        partition_key="2021-01-02", instance=instance
    )
    # Drift of day 2 is measured against the days before it (day 1), read from storage.
    (drift,) = [
        e
        for e in daily.get_asset_check_evaluations()
        if e.check_name == "feature_drift_vs_training_window"
    ]
    assert set(drift.metadata["psi"].value["2021-01-02"]) == {"trip_distance", "pickup_hour"}
    # A daily run that fails: the day's trips include pickups of the day before.
    source: TripSource = alert_resources["trip_source"]  # type: ignore[assignment]
    stray = {**alert_resources, "trip_source": StrayPickupsSource(**source.model_dump())}
    failed = (
        definitions(stray)
        .resolve_job_def("daily_job")
        .execute_in_process(partition_key="2021-01-03", instance=instance, raise_on_error=False)
    )
    assert not failed.success
    # An ingestion that succeeds although a (non-blocking, WARN) check fails.
    gaps = {**alert_resources, "trip_source": GapsInDistanceSource(**source.model_dump())}
    warned = dg.materialize(
        [taxi_zones, raw_trips, trip_features, *ASSET_CHECKS],
        selection=[raw_trips, trip_features],
        partition_key="2021-01-04",
        resources=gaps,
        instance=instance,
    )
    assert warned.success
    # An ad hoc materialization in this process that fails: covered like any other run.
    adhoc = dg.materialize(
        [taxi_zones, raw_trips, *ASSET_CHECKS],
        selection=[raw_trips],
        partition_key=DAY,
        resources=stray,
        instance=instance,
        raise_on_error=False,
    )
    assert not adhoc.success

    sensors.tick_all()
    titles = [payload["title"] for payload in webhook.payloads("/alerts")]
    by_title = {payload["title"]: payload for payload in webhook.payloads("/alerts")}

    # Successes of the monitored jobs, with their numbers.
    trained = by_title["✅ training_job [2021-01-01] succeeded"]["message"]
    model_meta = training.asset_materializations_for_node("duration_model")[0].metadata
    assert f"**Model trained:** v{model_meta['model_version'].value}" in trained
    assert (
        f"**RMSE:** {model_meta['val_rmse'].value:.2f} min "
        f"(baseline {model_meta['baseline_val_rmse'].value:.2f}"
    ) in trained
    assert f"{UI}/runs/{training.run_id}" in trained

    day2 = by_title["✅ daily_job [2021-01-02] succeeded"]["message"]
    trips = daily.asset_materializations_for_node("raw_trips")[0].metadata["dagster/row_count"]
    evaluation = daily.asset_materializations_for_node("model_evaluation")[0].metadata
    assert f"**Trips:** {trips.value:,}" in day2
    assert f"**RMSE:** {evaluation['rmse'].value:.2f} min" in day2
    decided = by_title["✅ promotion_job [2021-01-02] succeeded"]["message"]
    promoted = promotion.asset_materializations_for_node("model_promotion")[0].metadata
    assert f"**Champion:** new champion promoted: v{promoted['champion_version'].value}" in decided

    # The failed run: its step, the cause and the link.
    failure = by_title["❌ daily_job [2021-01-03] failed"]
    assert failure["type"] == "failure"
    assert "**Failed step:** raw_trips_checks" in failure["message"]
    assert "blocking asset check failed" in failure["message"]
    assert f"{UI}/runs/{failed.run_id}" in failure["message"]
    adhoc_failure = by_title[f"❌ materialize raw_trips [{DAY}] failed"]["message"]
    assert "**Job:** materialize raw_trips" in adhoc_failure
    assert f"{UI}/runs/{adhoc.run_id}" in adhoc_failure

    # Every failed check is announced, including the WARN of a run that succeeded.
    failed_checks = failed_check_evaluations(instance)
    check_titles = [title for title in titles if title.startswith(("⚠️ check", "❌ check"))]
    assert len(check_titles) == len(failed_checks)
    assert "❌ check raw_trips_pickups_on_day on raw_trips [2021-01-03] failed (ERROR)" in titles
    null_warning = by_title["⚠️ check raw_trips_null_rates on raw_trips [2021-01-04] failed (WARN)"]
    assert "trip_distance 10.0% null" in null_warning["message"]
    assert null_warning["type"] == "warning"

    # One message per event: exactly these, and nothing for the unmonitored ad hoc runs.
    run_titles = [title for title in titles if title not in check_titles]
    assert sorted(run_titles) == sorted(
        [
            "✅ training_job [2021-01-01] succeeded",
            "✅ daily_job [2021-01-02] succeeded",
            "✅ promotion_job [2021-01-02] succeeded",
            "❌ daily_job [2021-01-03] failed",
            f"❌ materialize raw_trips [{DAY}] failed",
        ]
    )

    sent = len(webhook.posts)
    sensors.tick_all()
    sensors.tick_all()
    assert len(webhook.posts) == sent


def report_evaluation(instance: dg.DagsterInstance, day: date, rmse: float) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key="model_evaluation", partition=day.isoformat(), metadata={"rmse": rmse}
        )
    )


def test_model_quality_regression_is_announced_once(
    instance: dg.DagsterInstance, alert_resources: dict[str, object], webhook: WebhookServer
) -> None:
    sensors = SensorRunner(instance, definitions(alert_resources), alert_resources)
    sensors.tick(model_quality_regression_alert)
    first = date(2021, 1, 1)
    for offset, rmse in enumerate([5.0, 5.2, 4.8, 5.0, 5.1, 4.9, 5.0]):
        report_evaluation(instance, first + timedelta(days=offset), rmse)
    report_evaluation(instance, date(2021, 1, 8), 6.0)  # 20% worse than the 7 days before
    report_evaluation(instance, date(2021, 1, 9), 5.3)  # within 10% of the trailing mean

    sensors.tick(model_quality_regression_alert)
    (payload,) = webhook.payloads("/alerts")
    assert payload["title"] == "📉 model quality regression [2021-01-08]: RMSE 6.00 vs 5.00"
    assert "5.00 min over 7 day(s) (2021-01-01..2021-01-07)" in payload["message"]
    assert "**Worse by:** 20.0% (alert above 10%)" in payload["message"]

    sensors.tick(model_quality_regression_alert)
    assert len(webhook.posts) == 1


def test_trailing_mean_uses_only_earlier_days_in_the_window() -> None:
    rmse = {"2021-01-01": 9.0, "2021-01-05": 4.0, "2021-01-06": 6.0, "2021-01-07": 1.0}
    assert trailing_mean(rmse, "2021-01-07", days=3) == (5.0, ["2021-01-05", "2021-01-06"])
    assert trailing_mean(rmse, "2021-01-01", days=3) is None


def test_sensor_outage_never_fails_a_tick(
    instance: dg.DagsterInstance, resources: dict[str, object], webhook: WebhookServer
) -> None:
    webhook.fail_next("/down", [503] * 10)
    notifier = Notifier(urls=f"json://{webhook.base_url}/down", max_attempts=2, backoff_seconds=0)
    down = {**resources, "notifier": notifier}
    sensors = SensorRunner(instance, definitions(down), down)
    sensors.tick(model_quality_regression_alert)
    for offset, rmse in enumerate([5.0, 9.0]):
        report_evaluation(instance, date(2021, 1, 1) + timedelta(days=offset), rmse)
    sensors.tick(model_quality_regression_alert)  # the regression is tried twice, then dropped
    assert len(webhook.payloads("/down")) == 2
    sensors.tick(model_quality_regression_alert)
    assert len(webhook.payloads("/down")) == 2


def test_alert_sensors_are_registered_and_on_by_default(settings: Settings) -> None:
    names = {sensor.name for sensor in build_definitions(settings).sensors or []}
    for sensor in (run_failure_alert, run_success_alert, failed_check_alert):
        assert sensor.name in names
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert model_quality_regression_alert.name in names


def test_run_partition_names_a_day_or_a_range() -> None:
    assert run_partition(dg.DagsterRun("daily_job", tags={"dagster/partition": DAY})) == DAY
    ranged = dg.DagsterRun(
        "ingestion_job",
        tags={
            "dagster/asset_partition_range_start": "2021-01-01",
            "dagster/asset_partition_range_end": "2021-01-31",
        },
    )
    assert run_partition(ranged) == "2021-01-01..2021-01-31"
    assert run_partition(dg.DagsterRun("adhoc")) is None


def test_success_alerts_name_existing_jobs() -> None:
    # The success sensor monitors jobs by name: a renamed job must not silently drop out.
    assert set(SUCCESS_ALERT_JOBS) <= {job.name for job in jobs}


def test_a_run_failing_outside_any_step_is_announced_with_its_reason(
    instance: dg.DagsterInstance, alert_resources: dict[str, object], webhook: WebhookServer
) -> None:
    defs = definitions(alert_resources)
    sensors = SensorRunner(instance, defs, alert_resources)
    sensors.tick(run_failure_alert)
    # What run monitoring does when a run's worker vanishes: the run fails, no step did.
    run = instance.create_run_for_job(
        defs.resolve_job_def("daily_job"), tags={"dagster/partition": DAY}
    )
    instance.report_run_failed(run, "run worker 4242 was lost (out of memory?)")

    sensors.tick(run_failure_alert)
    (payload,) = webhook.payloads("/alerts")
    assert payload["title"] == f"❌ daily_job [{DAY}] failed"
    assert payload["message"].splitlines() == [
        "**Job:** daily_job",
        f"**Partition:** {DAY}",
        "**Failed step:** (the run failed outside any step)",
        "**Error:** run worker 4242 was lost (out of memory?)",
        f"**Run:** {run.run_id}",
        f"**In Dagster:** {UI}/runs/{run.run_id}",
    ]
    sensors.tick(run_failure_alert)
    assert len(webhook.posts) == 1


def test_a_cursor_of_the_former_run_failure_sensor_starts_over_instead_of_failing(
    instance: dg.DagsterInstance, alert_resources: dict[str, object], webhook: WebhookServer
) -> None:
    # Before it was a plain sensor, the daemon stored a run_failure_sensor's cursor under this
    # name; an upgraded deployment hands it to the new sensor on its first tick.
    defs = definitions(alert_resources)
    sensors = SensorRunner(instance, defs, alert_resources)
    sensors.cursors[run_failure_alert.name] = (
        '{"__class__": "RunStatusSensorCursor", "record_id": 7, '
        '"record_timestamp": null, "update_timestamp": null}'
    )
    sensors.tick(run_failure_alert)
    run = instance.create_run_for_job(defs.resolve_job_def("daily_job"))
    instance.report_run_failed(run, "lost")
    sensors.tick(run_failure_alert)
    assert [payload["title"] for payload in webhook.payloads("/alerts")] == ["❌ daily_job failed"]


def test_ad_hoc_runs_are_named_after_their_assets() -> None:
    assets = ["raw_trips", "trip_features"]
    assert job_label("__ASSET_JOB", assets) == "materialize raw_trips, trip_features"
    assert job_label("__ephemeral_asset_job__", assets) == "materialize raw_trips, trip_features"
    many = [f"a{i}" for i in range(5)]
    assert job_label("__ASSET_JOB", many) == "materialize a0, a1, a2 and 2 more"
    assert job_label("__ASSET_JOB") == "ad hoc materialization"
    assert job_label("daily_job", assets) == "daily_job"
