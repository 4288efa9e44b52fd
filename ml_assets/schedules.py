"""Schedules built from the partitioned jobs: the daily loop each morning, then retraining."""

import inspect
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from ml_assets.jobs import daily_job, training_job
from ml_assets.lib.month_cache import month_file_name
from ml_assets.lib.tlc_errors import MonthNotPublishedError, TLCError
from ml_assets.partitions import DailyPartitioning
from ml_assets.resources.trip_source import TripSource

DAILY_CRON = "0 5 * * *"
"""05:00 UTC: the day before is complete in New York (UTC-5/-4) by then."""


def day_before(scheduled_time: datetime) -> date:
    """The partition a morning tick works on: the last complete day (UTC)."""
    return scheduled_time.astimezone(UTC).date() - timedelta(days=1)


def _outside_partitions(day: date, days: DailyPartitioning) -> dg.SkipReason | None:
    if day < days.first_day:
        return dg.SkipReason(f"{day} is before the first partition ({days.first_day})")
    if days.last_day is not None and day > days.last_day:
        return dg.SkipReason(
            f"{day} is after the last partition ({days.last_day}, ML_ASSETS_END_DATE)"
        )
    return None


def daily_tick(
    context: dg.ScheduleEvaluationContext, trip_source: TripSource, days: DailyPartitioning
) -> dg.RunRequest | dg.SkipReason:
    """Each morning at 05:00 UTC, run `daily_job` for the day before.

    With the TLC source it first asks TLC (a HEAD request) whether the day's month is published;
    TLC publishes a month weeks after it ends, so most mornings skip with that reason and the TLC
    publication sensor ingests the month when it appears. A day whose predictions already exist
    (the catch-up sensor or a backfill made them) is skipped, not run twice.
    """
    day = day_before(context.scheduled_execution_time)
    if skip := _outside_partitions(day, days):
        return skip
    if _materialized(context.instance, "trip_duration_predictions", day):
        return dg.SkipReason(
            f"{day}: trip_duration_predictions already exist (made by the catch-up sensor or a "
            "backfill); nothing to run"
        )
    if not trip_source.synthetic:
        month = day.replace(day=1)
        name = month_file_name(trip_source.taxi_type, month)
        try:
            trip_source.client().head_month(trip_source.taxi_type, month)
        except MonthNotPublishedError:
            return dg.SkipReason(
                f"{day}: TLC has not published {name} yet; tlc_publication_sensor ingests it "
                "when it appears"
            )
        except TLCError as error:
            # The run's own retries handle a flaky source; do not lose the day to a blip here.
            context.log.warning(f"could not check {name} ({error}); running anyway")
    return dg.RunRequest(partition_key=day.isoformat(), run_key=f"daily_job:{day.isoformat()}")


def _materialized(instance: dg.DagsterInstance, asset: str, day: date) -> bool:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[day.isoformat()]),
        limit=1,
    )
    return bool(records.records)


def training_tick(
    context: dg.ScheduleEvaluationContext, days: DailyPartitioning
) -> dg.RunRequest | dg.SkipReason:
    """Train the model of the day before, on `ML_ASSETS_RETRAIN_CRON` (default 06:00 UTC daily).

    Runs an hour after `daily_schedule`, once the day's features exist; if they do not (the daily
    run failed or is late) the tick is skipped with that reason instead of failing a training run.
    """
    day = day_before(context.scheduled_execution_time)
    if skip := _outside_partitions(day, days):
        return skip
    if not _materialized(context.instance, "trip_features", day):
        return dg.SkipReason(
            f"trip_features for {day} is not materialized yet; nothing to train on (is the "
            "daily_job run of that day done?)"
        )
    return dg.RunRequest(partition_key=day.isoformat(), run_key=f"training_job:{day.isoformat()}")


def build_schedules(days: DailyPartitioning, retrain_cron: str) -> list[dg.ScheduleDefinition]:
    """`daily_schedule` at 05:00 UTC and `training_schedule` on `retrain_cron`, over `days`."""

    @dg.schedule(
        job=daily_job,
        cron_schedule=DAILY_CRON,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=inspect.cleandoc(daily_tick.__doc__ or ""),
    )
    def daily_schedule(
        context: dg.ScheduleEvaluationContext, trip_source: TripSource
    ) -> dg.RunRequest | dg.SkipReason:
        return daily_tick(context, trip_source, days)

    @dg.schedule(
        job=training_job,
        cron_schedule=retrain_cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=inspect.cleandoc(training_tick.__doc__ or ""),
    )
    def training_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        return training_tick(context, days)

    return [daily_schedule, training_schedule]
