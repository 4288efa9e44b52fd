"""`daily_health_summary`: once a day, after the freshness deadline, one message with the state of
the loop, sent to the channels of `ML_ASSETS_SUMMARY_URLS` (none: not sent)."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from ml_assets.lib.catch_up import days_between
from ml_assets.lib.freshness import deadline_of
from ml_assets.lib.health_summary import Evaluated, SummaryFacts, TrainedModel, summary_message
from ml_assets.resources.notifier import Notifier
from ml_assets.resources.trip_source import TripSource
from ml_assets.sensors.freshness import FreshnessRule, evaluate_freshness
from ml_assets.sensors.loop_reading import (
    failed_checks_since,
    materialized_days,
)
from ml_assets.sensors.published_months import PublishedMonths
from ml_assets.sensors.run_events import metadata_values

SUMMARY_URLS_ENV_VAR = "ML_ASSETS_SUMMARY_URLS"
WEEK = 7
SUMMARY_INTERVAL_SECONDS = 300


def _latest_by_day(
    instance: dg.DagsterInstance, asset: str, days: list[date]
) -> dict[date, dict[str, object]]:
    """The metadata of the latest materialization of each of `days` of `asset`."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(asset), asset_partitions=[day.isoformat() for day in days]
        ),
        limit=len(days) * 10,
    ).records
    latest: dict[date, dict[str, object]] = {}
    for record in records:  # newest first
        if record.partition_key:
            latest.setdefault(
                date.fromisoformat(record.partition_key), metadata_values(record.event_log_entry)
            )
    return latest


def summary_facts(
    instance: dg.DagsterInstance, publications: PublishedMonths, rule: FreshnessRule, now: datetime
) -> SummaryFacts:
    """What the summary sent at `now` says: about the week ending the day before."""
    day = now.astimezone(UTC).date() - timedelta(days=1)
    week = days_between(max(rule.first_day, day - timedelta(days=WEEK - 1)), day)
    materialized = materialized_days(instance, rule.first_day)
    models = sorted(materialized["duration_model"])
    latest_model = None
    if models:
        metadata = _latest_by_day(instance, "duration_model", [models[-1]]).get(models[-1], {})
        val_rmse = metadata.get("val_rmse")
        latest_model = TrainedModel(
            day=models[-1],
            version=str(metadata["model_version"]) if metadata.get("model_version") else None,
            val_rmse=float(val_rmse) if isinstance(val_rmse, (int, float)) else None,
        )
    # The evaluation scores the day; the promotion step decides, and names the champion after it.
    decisions = _latest_by_day(instance, "model_promotion", week)
    evaluations = [
        Evaluated(
            day=evaluated_day,
            rmse=float(metadata["rmse"]),  # type: ignore[arg-type]
            champion_version=str(decision["champion_version"])
            if (decision := decisions.get(evaluated_day, {})).get("champion_version")
            else None,
            promoted=bool(decision.get("promoted")),
        )
        for evaluated_day, metadata in _latest_by_day(instance, "model_evaluation", week).items()
        if isinstance(metadata.get("rmse"), (int, float))
    ]
    return SummaryFacts(
        day=day,
        week=week,
        ingested=sorted(set(week) & materialized["raw_trips"]),
        latest_model=latest_model,
        evaluations=evaluations,
        failed_checks=failed_checks_since(instance, now - timedelta(hours=24)),
        freshness=evaluate_freshness(instance, publications, rule, now),
    )


def summary_tick(
    context: dg.SensorEvaluationContext,
    trip_source: TripSource,
    notifier: Notifier,
    rule: FreshnessRule,
    now: datetime,
    summary_urls: str,
) -> dg.SkipReason:
    """Once a day, at the first tick after the freshness deadline (ML_ASSETS_FRESHNESS_DEADLINE),
    sends the day's summary of the loop to the channels of ML_ASSETS_SUMMARY_URLS: days ingested
    over the last week, the newest model, the champion and its RMSE day by day, failed checks of
    the last 24 hours and what is late. The cursor holds the last day summarized, so a day is
    summarized once, across ticks and daemon restarts."""
    day = now.astimezone(UTC).date() - timedelta(days=1)
    if now < deadline_of(day, rule.deadline):
        return dg.SkipReason(f"the summary of {day} is sent after {rule.deadline} UTC")
    if context.cursor == day.isoformat():
        return dg.SkipReason(f"the summary of {day} was sent")
    if not summary_urls.strip():
        return dg.SkipReason(f"{SUMMARY_URLS_ENV_VAR} is not set: no daily summary is sent")
    publications = PublishedMonths(trip_source, {}, now)
    message = summary_message(summary_facts(context.instance, publications, rule, now))
    channels = Notifier(
        urls=summary_urls,
        ui_url=notifier.ui_url,
        max_attempts=notifier.max_attempts,
        backoff_seconds=notifier.backoff_seconds,
    )
    deliveries = channels.send(message, log=context.log)
    context.update_cursor(day.isoformat())
    sent = sum(delivery.delivered for delivery in deliveries)
    return dg.SkipReason(f"summary of {day} sent to {sent} of {len(deliveries)} channel(s)")


def build_health_summary_sensor(
    rule: FreshnessRule,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    summary_urls: Callable[[], str] = lambda: os.environ.get(SUMMARY_URLS_ENV_VAR, ""),
) -> dg.SensorDefinition:
    """`daily_health_summary`; the channels' URLs (they hold secrets) are read when a summary is
    sent, never at load. `clock` and `summary_urls` are for tests."""

    @dg.sensor(
        name="daily_health_summary",
        minimum_interval_seconds=SUMMARY_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(summary_tick.__doc__ or "").replace("\n    ", " "),
    )
    def daily_health_summary(
        context: dg.SensorEvaluationContext, trip_source: TripSource, notifier: Notifier
    ) -> dg.SkipReason:
        return summary_tick(context, trip_source, notifier, rule, clock(), summary_urls())

    return daily_health_summary
