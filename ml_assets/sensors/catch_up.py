"""`catch_up_sensor`: the days the daily loop missed (the daemon was down, TLC published late) run
by themselves, oldest first, without a person launching a backfill.

The planning is plain code (`ml_assets.lib.catch_up`); this module reads the instance, asks TLC
which months are published (HEAD requests, remembered in the cursor) and turns the plan into runs.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from datetime import UTC, datetime

import dagster as dg

from ml_assets.lib.catch_up import (
    CATCH_UP_STEP_TAG,
    CatchUpPlan,
    LoopState,
    PlannedRun,
    Step,
    plan_catch_up,
)
from ml_assets.partitions import DailyPartitioning
from ml_assets.resources.trip_source import TripSource
from ml_assets.sensors.loop_reading import (
    LOOP_ASSETS,
    busy_days,
    catch_up_runs,
    materialized_days,
)
from ml_assets.sensors.published_months import PublishedMonths, load_cursor
from ml_assets.sensors.run_events import RANGE_TAGS

CATCH_UP_INTERVAL_SECONDS = 30
"""How often the catch-up looks; evaluations go one day per run, so this paces a long catch-up."""

RUN_RETRY_TAGS = {
    # As daily_job: a run that crashed (lost process, out of memory) is retried from the failed
    # step; a step that failed after its own retry policy is not.
    "dagster/max_retries": "2",
    "dagster/retry_strategy": "FROM_FAILURE",
    "dagster/retry_on_asset_or_op_failure": "false",
}


def run_request(planned: PlannedRun) -> dg.RunRequest:
    """The Dagster run of one planned step: one day, or a range of days as one run (ingestion)."""
    tags = {CATCH_UP_STEP_TAG: planned.step.value, **RUN_RETRY_TAGS}
    assets = [dg.AssetKey(name) for name in planned.assets]
    if planned.step == Step.zones:
        return dg.RunRequest(run_key=planned.run_key, asset_selection=assets, tags=tags)
    if planned.step == Step.ingest:
        tags.update(
            zip(RANGE_TAGS, (planned.first.isoformat(), planned.last.isoformat()), strict=True)
        )
        return dg.RunRequest(run_key=planned.run_key, asset_selection=assets, tags=tags)
    return dg.RunRequest(
        run_key=planned.run_key,
        asset_selection=assets,
        partition_key=planned.first.isoformat(),
        tags=tags,
    )


def catch_up_tick(
    context: dg.SensorEvaluationContext,
    trip_source: TripSource,
    days: DailyPartitioning,
    catch_up_days: int,
    now: datetime,
) -> dg.SensorResult:
    """Launches the runs that fill the missing days of the last `ML_ASSETS_CATCH_UP_DAYS` days.

    The window ends on the newest day whose trips can exist: yesterday with the sample source; with
    TLC, the last day of the newest published month (checked with HEAD requests, remembered for an
    hour). Missing `raw_trips`/`trip_features` days (and the training window before the first day
    of the window) are ingested as one run per range of consecutive days; then each missing
    `duration_model` (at most two at a time, oldest first) once its training window's features
    exist; then `model_evaluation` and `trip_duration_predictions` one day per run, strictly in
    day order (the evaluation moves the champion), each after the model of the day before.

    A day that something else is working on (a schedule, a backfill) is left alone; a step whose
    catch-up run failed is not launched again (the failure is announced and the freshness check
    names it): rerun it, and the catch-up continues from there.
    """
    cursor = load_cursor(context.cursor)
    publications = PublishedMonths(trip_source, cursor.get("published") or {}, now)  # type: ignore[arg-type]
    first_day = days.first_day
    newest = publications.newest_available_day(now.date())
    if newest is not None:
        newest = days.newest_of(newest)
    if newest is None:
        plan = CatchUpPlan(window=[])
        reason = (
            f"TLC has published none of the last months of {trip_source.taxi_type} trips; "
            "nothing to catch up"
        )
    else:
        state = LoopState(
            first_day=first_day,
            newest_day=newest,
            materialized=materialized_days(context.instance, first_day),
            steps=catch_up_runs(context.instance),
            busy_days=busy_days(context.instance),
        )
        plan = plan_catch_up(state, catch_up_days, days.training_window_days)
        reason = plan.summary()
    for error in publications.errors:
        context.log.warning(error)
    new_cursor = json.dumps({"published": publications.state}, sort_keys=True)
    if plan.runs:
        context.log.info(reason)
        return dg.SensorResult(
            run_requests=[run_request(planned) for planned in plan.runs], cursor=new_cursor
        )
    return dg.SensorResult(skip_reason=reason, cursor=new_cursor)


def build_catch_up_sensor(
    days: DailyPartitioning,
    catch_up_days: int,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> dg.SensorDefinition:
    """`catch_up_sensor` over the last `catch_up_days` days (`ML_ASSETS_CATCH_UP_DAYS`); `clock`
    is for tests. Stopped by default: turn it on in the UI (Automation) or with
    `dagster sensor start catch_up_sensor`."""

    @dg.sensor(
        name="catch_up_sensor",
        target=dg.AssetSelection.assets(*LOOP_ASSETS),
        minimum_interval_seconds=CATCH_UP_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=inspect.cleandoc(catch_up_tick.__doc__ or "").replace(
            "`ML_ASSETS_CATCH_UP_DAYS` days", f"{catch_up_days} days (ML_ASSETS_CATCH_UP_DAYS)"
        ),
    )
    def catch_up_sensor(
        context: dg.SensorEvaluationContext, trip_source: TripSource
    ) -> dg.SensorResult:
        return catch_up_tick(context, trip_source, days, catch_up_days, clock())

    return catch_up_sensor
