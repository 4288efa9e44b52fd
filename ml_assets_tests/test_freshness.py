"""Freshness checks and alerts, and the daily health summary, received by a loopback webhook."""

from collections.abc import Iterator
from datetime import UTC, date, datetime

import dagster as dg
import pytest

from ml_assets.lib.catch_up import days_between
from ml_assets.lib.freshness import due_days
from ml_assets.resources.notifier import Notifier
from ml_assets.sensors.freshness import FreshnessRule, build_freshness_sensor
from ml_assets.sensors.health_summary import build_health_summary_sensor
from ml_assets.settings import Settings, SettingsError
from ml_assets_tests.alert_receivers import WebhookServer, webhook_server

D = date.fromisoformat
UI = "http://dagster.example:3000"
RULE = FreshnessRule(first_day=D("2026-11-01"), deadline="08:00", lookback_days=7, ui_url=UI)
LOOP = ("raw_trips", "trip_features", "duration_model", "model_evaluation")


def test_due_days_follow_the_deadline() -> None:
    before = datetime(2026, 12, 2, 7, 59, tzinfo=UTC)
    after = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
    assert due_days(before, D("2026-11-01"), 3, "08:00") == days_between(
        D("2026-11-28"), D("2026-11-30")
    )
    assert due_days(after, D("2026-11-01"), 3, "08:00")[-1] == D("2026-12-01")
    # A historical run (ML_ASSETS_END_DATE): no day after its last is ever due.
    assert due_days(after, D("2026-11-01"), 3, "08:00", D("2026-11-20")) == days_between(
        D("2026-11-18"), D("2026-11-20")
    )
    assert Settings.from_env({}).freshness_deadline == "08:00"
    with pytest.raises(SettingsError, match=r"^ML_ASSETS_FRESHNESS_DEADLINE='8am': expected"):
        Settings.from_env({"ML_ASSETS_FRESHNESS_DEADLINE": "8am"})


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    with webhook_server() as server:
        yield server


def _materialize(instance: dg.DagsterInstance, assets: tuple[str, ...], days: list[date]) -> None:
    for asset in assets:
        for day in days:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset, partition=day.isoformat())
            )


class Ticker:
    """Ticks a sensor as the daemon does: cursor kept, check results recorded in the instance."""

    def __init__(self, instance: dg.DagsterInstance, resources: dict[str, object]) -> None:
        self.instance, self.resources, self.cursor = instance, resources, None

    def tick(self, sensor: dg.SensorDefinition) -> str | None:
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources=self.resources
        )
        result = sensor.evaluate_tick(context)
        for event in result.asset_events:
            self.instance.report_runless_asset_event(event)
        self.cursor = result.cursor
        return result.skip_message


def _check_evaluations(instance: dg.DagsterInstance) -> list[object]:
    records = instance.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    )
    return [record.event_log_entry.dagster_event.asset_check_evaluation_data for record in records]


@pytest.mark.slow
def test_late_days_are_announced_once_with_what_blocks_them(
    instance: dg.DagsterInstance, resources: dict[str, object], webhook: WebhookServer
) -> None:
    notifier = Notifier(urls=f"json://{webhook.base_url}/alerts", ui_url=UI, backoff_seconds=0.01)
    clock = {"now": datetime(2026, 12, 1, 7, 0, tzinfo=UTC)}
    sensor = build_freshness_sensor(RULE, clock=lambda: clock["now"])
    ticker = Ticker(instance, {"trip_source": resources["trip_source"], "notifier": notifier})
    # The loop ran through 11-28; 11-29's scoring run failed; nothing ran for 11-30.
    _materialize(
        instance,
        (*LOOP, "trip_duration_predictions"),
        days_between(D("2026-11-01"), D("2026-11-28")),
    )
    _materialize(instance, ("raw_trips", "trip_features", "duration_model"), [D("2026-11-29")])
    failed = instance.create_run_for_job(
        dg.GraphDefinition(name="g", node_defs=[]).to_job(name="daily_job"),
        tags={"dagster/partition": "2026-11-29"},
        status=dg.DagsterRunStatus.FAILURE,
    )

    ticker.tick(sensor)  # 07:00: 11-30 is not due yet; 11-29 is
    assert [post["title"] for post in webhook.payloads("/alerts")] == [
        "⏰ late: trip_duration_predictions missing for 1 day(s) (2026-11-29..2026-11-29)"
    ]
    body = webhook.payloads("/alerts")[0]["message"]
    assert f"2026-11-29 (new): daily_job failed: failure ({UI}/runs/{failed.run_id})" in body

    ticker.tick(sensor)  # nothing new: nothing sent
    assert len(webhook.payloads("/alerts")) == 1

    clock["now"] = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)  # 11-30 becomes due
    ticker.tick(sensor)
    second = webhook.payloads("/alerts")[1]
    assert second["title"] == (
        "⏰ late: raw_trips, trip_duration_predictions missing for 2 day(s) "
        "(2026-11-29..2026-11-30)"
    )
    assert "- 2026-11-30 (new): no run was launched (is catch_up_sensor" in second["message"]
    assert "- 2026-11-29: daily_job failed" in second["message"]
    latest = {e.asset_key.to_user_string(): e for e in reversed(_check_evaluations(instance))}  # type: ignore[attr-defined]
    assert not latest["trip_duration_predictions"].passed
    assert latest["trip_duration_predictions"].check_name == "on_time"
    assert latest["raw_trips"].metadata["late_days"].value == ["2026-11-30"]

    # Caught up: one message saying so, and the checks pass.
    _materialize(instance, (*LOOP, "trip_duration_predictions"), [D("2026-11-29"), D("2026-11-30")])
    ticker.tick(sensor)
    assert webhook.payloads("/alerts")[2]["title"] == (
        "✅ on time again: raw_trips, trip_duration_predictions"
    )
    latest = {e.asset_key.to_user_string(): e for e in reversed(_check_evaluations(instance))}  # type: ignore[attr-defined]
    assert latest["trip_duration_predictions"].passed and latest["raw_trips"].passed
    ticker.tick(sensor)
    assert len(webhook.payloads("/alerts")) == 3


@pytest.mark.slow
def test_the_daily_summary_is_sent_once_a_day_after_the_deadline(
    instance: dg.DagsterInstance, resources: dict[str, object], webhook: WebhookServer
) -> None:
    notifier = Notifier(urls=f"json://{webhook.base_url}/alerts", ui_url=UI, backoff_seconds=0.01)
    clock = {"now": datetime(2026, 12, 2, 7, 0, tzinfo=UTC)}
    sensor = build_health_summary_sensor(
        RULE, clock=lambda: clock["now"], summary_urls=lambda: f"json://{webhook.base_url}/summary"
    )
    ticker = Ticker(instance, {"trip_source": resources["trip_source"], "notifier": notifier})
    week = days_between(D("2026-11-25"), D("2026-12-01"))
    _materialize(instance, LOOP, days_between(D("2026-11-01"), D("2026-11-30")))
    _materialize(
        instance, ("trip_duration_predictions",), days_between(D("2026-11-01"), D("2026-11-30"))
    )
    for number, day in enumerate(week[:-1]):
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                "model_evaluation", partition=day.isoformat(), metadata={"rmse": 5.0 + number / 10}
            )
        )
        # The promotion step of the day decides, and names the champion after its decision.
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                "model_promotion",
                partition=day.isoformat(),
                metadata={"champion_version": "3", "promoted": number == 2},
            )
        )
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            "duration_model",
            partition="2026-11-30",
            metadata={"model_version": "9", "val_rmse": 4.5},
        )
    )

    assert ticker.tick(sensor) == "the summary of 2026-12-01 is sent after 08:00 UTC"
    clock["now"] = datetime(2026, 12, 2, 8, 5, tzinfo=UTC)
    ticker.tick(sensor)
    (summary,) = webhook.payloads("/summary")
    assert webhook.payloads("/alerts") == []  # only the summary channels get it
    assert summary["title"] == "⚠️ ml_assets daily summary for 2026-12-01"
    assert summary["message"].splitlines() == [
        "**Days ingested:** 6 of 7 days (2026-11-25..2026-12-01); missing 2026-12-01",
        "**Newest model:** 2026-11-30 (v9, validation RMSE 4.50 min)",
        "**Champion:** v3 (after 2026-11-30; 1 promotion(s) this week)",
        "**RMSE by evaluated day:** 11-25 5.00, 11-26 5.10, 11-27 5.20, 11-28 5.30, 11-29 5.40, "
        "11-30 5.50 (+0.50 min over the week, worse)",
        "**Failed checks (24 h):** none",
        "**Late:** raw_trips: 2026-12-01 (no run was launched (is catch_up_sensor or "
        "daily_schedule on?)); trip_duration_predictions: 2026-12-01 (raw_trips of 2026-12-01 "
        "is missing and no run was launched (is catch_up_sensor or daily_schedule on?))",
    ]
    # A second tick the same day sends nothing; the next day's summary goes out after 08:00.
    assert ticker.tick(sensor) == "the summary of 2026-12-01 was sent"
    clock["now"] = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    ticker.tick(sensor)
    assert [post["title"] for post in webhook.payloads("/summary")][-1].endswith("2026-12-02")
    assert len(webhook.payloads("/summary")) == 2


def test_no_summary_without_summary_channels(
    instance: dg.DagsterInstance, resources: dict[str, object]
) -> None:
    sensor = build_health_summary_sensor(
        RULE, clock=lambda: datetime(2026, 12, 2, 9, 0, tzinfo=UTC), summary_urls=lambda: ""
    )
    ticker = Ticker(instance, {"trip_source": resources["trip_source"], "notifier": Notifier()})
    assert ticker.tick(sensor) == "ML_ASSETS_SUMMARY_URLS is not set: no daily summary is sent"
