"""Freshness of `raw_trips` and `trip_duration_predictions`: the `on_time` asset checks, kept
current by `freshness_sensor`, which also sends one alert when days become late.

Which days are late and why is plain code (`ml_assets.lib.freshness`); this module reads the
instance and TLC, records the checks' results and sends the messages.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from ml_assets.lib.freshness import (
    Freshness,
    due_days,
    fresh_again_message,
    freshness_of,
    late_message,
)
from ml_assets.partitions import DailyPartitioning
from ml_assets.resources.notifier import Notifier
from ml_assets.resources.trip_source import TripSource
from ml_assets.sensors.loop_reading import (
    latest_runs_by_day,
    materialized_days,
)
from ml_assets.sensors.published_months import PublishedMonths, load_cursor
from ml_assets.settings import Settings

CHECKED_ASSETS = ("raw_trips", "trip_duration_predictions")
CHECK_NAME = "on_time"
FRESHNESS_INTERVAL_SECONDS = 300


@dataclass(frozen=True)
class FreshnessRule:
    """When days are due (`deadline`, HH:MM UTC of the next day) and how many of the newest due
    days are looked at (`lookback_days`), from the first partition `first_day`."""

    first_day: date
    deadline: str
    lookback_days: int
    ui_url: str
    last_day: date | None = None
    """The last day of a historical run (ML_ASSETS_END_DATE): no later day is ever due."""

    def describe(self, asset: str) -> str:
        return (
            f"Every day of {asset} exists by {self.deadline} UTC the next day "
            f"(ML_ASSETS_FRESHNESS_DEADLINE), over the last {self.lookback_days} due days "
            "(ML_ASSETS_CATCH_UP_DAYS). A late day is named with what blocks it: TLC not having "
            "published its month (listed, but not a failure: no run could make it), a run working "
            "on it, a failed run (its error, failed checks and link) or the first missing input. "
            "Kept current by `freshness_sensor`, which announces newly late days once; an asset "
            "never materialized is not checked."
        )


def freshness_rule(settings: Settings, days: DailyPartitioning) -> FreshnessRule:
    """The freshness rule of `settings` over the days of `days`."""
    return FreshnessRule(
        first_day=days.first_day,
        last_day=days.last_day,
        deadline=settings.freshness_deadline,
        lookback_days=settings.catch_up_days,
        ui_url=settings.ui_url,
    )


def evaluate_freshness(
    instance: dg.DagsterInstance,
    publications: PublishedMonths,
    rule: FreshnessRule,
    now: datetime,
) -> list[Freshness]:
    """The freshness of each checked asset at `now`."""
    materialized = materialized_days(instance, rule.first_day)
    due = due_days(now, rule.first_day, rule.lookback_days, rule.deadline, rule.last_day)
    late_anywhere = [
        day for asset in CHECKED_ASSETS for day in due if day not in materialized[asset]
    ]
    runs = latest_runs_by_day(
        instance, late_anywhere, since=now - timedelta(days=rule.lookback_days + 2)
    )
    unpublished = {
        day: publications.file_name(day.replace(day=1))
        for day in sorted(set(late_anywhere))
        if not publications.published(day.replace(day=1))
    }
    results = []
    for asset in CHECKED_ASSETS:
        if not materialized[asset]:
            # The loop has not started (a fresh install): nothing is late yet.
            results.append(Freshness(asset=asset, deadline=rule.deadline, due=[]))
            continue
        results.append(
            freshness_of(asset, due, rule.deadline, materialized, runs, unpublished, rule.ui_url)
        )
    return results


def check_result(result: Freshness) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=result.asset,
        check_name=CHECK_NAME,
        passed=result.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=result.description(),
        metadata=_metadata(result),
    )


def _metadata(result: Freshness) -> dict[str, object]:
    return {
        "late_days": [late.day.isoformat() for late in result.failing],
        "waiting_for_source": [
            late.day.isoformat() for late in result.late if late.waiting_for_source
        ],
        "due_from": result.due[0].isoformat() if result.due else None,
        "due_through": result.due[-1].isoformat() if result.due else None,
        "deadline_utc": result.deadline,
        "blockers": dg.MetadataValue.md(
            "\n".join(f"- {late.day}: {late.blocker}" for late in result.late) or "none"
        ),
    }


def build_freshness_checks(rule: FreshnessRule) -> list[dg.AssetChecksDefinition]:
    """The `on_time` check of each checked asset (evaluated by `freshness_sensor`, or by hand)."""

    def make(asset: str) -> dg.AssetChecksDefinition:
        @dg.asset_check(
            asset=asset, name=CHECK_NAME, blocking=False, description=rule.describe(asset)
        )
        def on_time(
            context: dg.AssetCheckExecutionContext, trip_source: TripSource
        ) -> dg.AssetCheckResult:
            now = datetime.now(UTC)
            publications = PublishedMonths(trip_source, {}, now)
            results = evaluate_freshness(context.instance, publications, rule, now)
            return check_result(next(result for result in results if result.asset == asset))

        return on_time

    return [make(asset) for asset in CHECKED_ASSETS]


def freshness_tick(
    context: dg.SensorEvaluationContext,
    trip_source: TripSource,
    notifier: Notifier,
    rule: FreshnessRule,
    now: datetime,
) -> dg.SensorResult:
    """Evaluates the `on_time` checks of `raw_trips` and `trip_duration_predictions`, records a
    result in the UI whenever it changes, and sends one message when days become late (every late
    day and what blocks it), and one when every day is on time again."""
    cursor = load_cursor(context.cursor)
    publications = PublishedMonths(trip_source, cursor.get("published") or {}, now)  # type: ignore[arg-type]
    results = evaluate_freshness(context.instance, publications, rule, now)
    reported: dict[str, str] = dict(cursor.get("reported") or {})  # type: ignore[call-overload]
    announced: dict[str, list[str]] = dict(cursor.get("announced") or {})  # type: ignore[call-overload]

    evaluations = []
    for result in results:
        if reported.get(result.asset) != result.signature():
            evaluations.append(
                dg.AssetCheckEvaluation(
                    asset_key=dg.AssetKey(result.asset),
                    check_name=CHECK_NAME,
                    passed=result.passed,
                    severity=dg.AssetCheckSeverity.ERROR,
                    description=result.description(),
                    metadata=_metadata(result),
                )
            )
            reported[result.asset] = result.signature()

    failing = {
        result.asset: {late.day.isoformat() for late in result.failing} for result in results
    }
    new_days = sorted(
        {
            date.fromisoformat(day)
            for asset, days in failing.items()
            for day in days - set(announced.get(asset, []))
        }
    )
    was_late = any(announced.values())
    if new_days:
        notifier.send(late_message(results, new_days), log=context.log)
    elif was_late and not any(failing.values()):
        notifier.send(fresh_again_message(results), log=context.log)
    announced = {asset: sorted(days) for asset, days in failing.items() if days}

    for error in publications.errors:
        context.log.warning(error)
    new_cursor = json.dumps(
        {"published": publications.state, "reported": reported, "announced": announced},
        sort_keys=True,
    )
    summary = "; ".join(result.description() for result in results)
    return dg.SensorResult(asset_events=evaluations, skip_reason=summary, cursor=new_cursor)


def build_freshness_sensor(
    rule: FreshnessRule, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> dg.SensorDefinition:
    """`freshness_sensor`, every five minutes; `clock` is for tests."""

    @dg.sensor(
        name="freshness_sensor",
        minimum_interval_seconds=FRESHNESS_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(freshness_tick.__doc__ or "").replace("\n    ", " "),
    )
    def freshness_sensor(
        context: dg.SensorEvaluationContext, trip_source: TripSource, notifier: Notifier
    ) -> dg.SensorResult:
        return freshness_tick(context, trip_source, notifier, rule, clock())

    return freshness_sensor
