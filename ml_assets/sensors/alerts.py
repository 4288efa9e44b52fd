"""Alerts: a message for every failed run, every successful daily or training run, every failed
asset check and every model-quality regression, sent through the `notifier` resource.

Each sensor keeps a cursor in the Dagster instance (the run status sensors' built-in one, the
run-status records already seen, or the storage id of the last materialization handled), so every
event is announced once, across ticks and daemon restarts. A sensor turned on for the first time starts from that moment: history is not
replayed. Sending never raises (the notifier retries with backoff, then logs and drops), so a chat
outage cannot fail a sensor tick or a pipeline.
"""

import json
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import dagster as dg
from dagster import DagsterEventType, DagsterRunStatus
from dagster._utils.error import SerializableErrorInfo

from ml_assets.jobs import jobs
from ml_assets.lib.notifications import (
    failed_check_message,
    is_regression,
    model_regression_message,
    run_failure_message,
    run_success_message,
)
from ml_assets.resources.notifier import Notifier
from ml_assets.settings import Settings

_settings = Settings.from_env()

RMSE_REGRESSION_MARGIN = _settings.rmse_regression_margin
RMSE_TRAILING_DAYS = _settings.rmse_trailing_days
EVENTS_PER_TICK = 25
"""At most this many events are announced per tick; the rest wait for the next one."""

SUCCESS_ALERT_JOBS = ("daily_job", "training_job", "ml_loop_job")
"""The jobs whose successful runs are announced (the others' successes are routine or ad hoc)."""

MODEL_EVALUATION = dg.AssetKey("model_evaluation")
PARTITION_TAG = "dagster/partition"


def run_partition(run: dg.DagsterRun) -> str | None:
    """The run's partition, or `first..last` for a run over a range (a single-run backfill)."""
    if PARTITION_TAG in run.tags:
        return run.tags[PARTITION_TAG]
    start, end = (
        run.tags.get(f"dagster/asset_partition_range_{side}") for side in ("start", "end")
    )
    return f"{start}..{end}" if start and end else None


def _root_cause(error: SerializableErrorInfo) -> str:
    """The user's exception, not Dagster's "error occurred while executing op" wrapper."""
    while error.cause is not None:
        error = error.cause
    return error.message


@dg.run_failure_sensor(
    name="run_failure_alert",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def run_failure_alert(context: dg.RunFailureSensorContext, notifier: Notifier) -> None:
    """Announces every failed run of this code location: job, partition, the failing step(s), a
    short error summary and a link to the run in the UI."""
    run = context.dagster_run
    step_failures = context.get_step_failure_events()
    failing_steps = list(dict.fromkeys(event.step_key for event in step_failures if event.step_key))
    if step_failures and step_failures[0].step_failure_data.error:
        error = _root_cause(step_failures[0].step_failure_data.error)
    else:
        error = context.failure_event.message or ""
    notifier.send(
        run_failure_message(
            job=run.job_name,
            run_id=run.run_id,
            partition=run_partition(run),
            failing_steps=failing_steps,
            error=error,
            ui_url=notifier.ui_url,
        ),
        log=context.log,
    )


@dataclass(frozen=True)
class RunNumbers:
    """What a daily or training run produced, read from its materializations."""

    raw_rows: int | None = None
    feature_rows: int | None = None
    model_version: str | None = None
    rmse: float | None = None
    baseline_rmse: float | None = None
    promoted: bool | None = None
    champion_version: str | None = None


def _metadata_values(entry: dg.EventLogEntry) -> dict[str, Any]:
    materialization = entry.asset_materialization
    if materialization is None:
        return {}
    return {key: value.value for key, value in materialization.metadata.items()}


def run_numbers(instance: dg.DagsterInstance, run_id: str) -> RunNumbers:
    """Rows, RMSE vs baseline and the champion decision of a run, from its materializations.

    A run over several days adds up its rows and reports its last evaluation. The evaluation's
    RMSE (the model trained through the day before, on the day) wins over the training
    validation RMSE when a run has both.
    """
    rows: dict[str, int] = {}
    trained: dict[str, Any] = {}
    evaluated: dict[str, Any] = {}
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
        key = entry.asset_materialization.asset_key.to_user_string()
        values = _metadata_values(entry)
        if key in ("raw_trips", "trip_features"):
            rows[key] = rows.get(key, 0) + int(values.get("dagster/row_count", 0))
        elif key == "duration_model":
            trained = values
        elif key == "model_evaluation":
            evaluated = values
    if evaluated:
        rmse, baseline = evaluated.get("rmse"), evaluated.get("baseline_rmse")
    else:
        rmse, baseline = trained.get("val_rmse"), trained.get("baseline_val_rmse")
    champion = evaluated.get("champion_version")
    return RunNumbers(
        raw_rows=rows.get("raw_trips"),
        feature_rows=rows.get("trip_features"),
        model_version=None if not trained else str(trained.get("model_version")),
        rmse=rmse,
        baseline_rmse=baseline,
        promoted=evaluated.get("promoted") if evaluated else None,
        champion_version=None if champion is None else str(champion),
    )


@dg.run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    name="run_success_alert",
    monitored_jobs=[job for job in jobs if job.name in SUCCESS_ALERT_JOBS],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def run_success_alert(context: dg.RunStatusSensorContext, notifier: Notifier) -> None:
    """Announces every successful `daily_job`, `training_job` and `ml_loop_job` run with the day's
    numbers: trips and feature rows, the model trained, RMSE against the naive baseline, and
    whether a new champion was promoted."""
    run = context.dagster_run
    numbers = run_numbers(context.instance, run.run_id)
    notifier.send(
        run_success_message(
            job=run.job_name,
            run_id=run.run_id,
            partition=run_partition(run),
            raw_rows=numbers.raw_rows,
            feature_rows=numbers.feature_rows,
            rmse=numbers.rmse,
            baseline_rmse=numbers.baseline_rmse,
            promoted=numbers.promoted,
            champion_version=numbers.champion_version,
            model_version=numbers.model_version,
            ui_url=notifier.ui_url,
        ),
        log=context.log,
    )


FINISHED_RUN_EVENTS = (
    DagsterEventType.RUN_SUCCESS,
    DagsterEventType.RUN_FAILURE,
    DagsterEventType.RUN_CANCELED,
)


def failed_checks_of_run(instance: dg.DagsterInstance, run_id: str) -> list[dg.EventLogEntry]:
    """The failed asset check evaluations of one run, in the order they happened."""
    return [
        entry
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
        if not entry.dagster_event.asset_check_evaluation_data.passed
    ]


@dg.sensor(
    name="failed_check_alert",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def failed_check_alert(context: dg.SensorEvaluationContext, notifier: Notifier) -> dg.SkipReason:
    """Announces every failed asset check, WARN or ERROR, once its run has finished, including
    runs that succeeded (a non-blocking check fails without failing its run, so the run failure
    alert misses it). Checks of every job are covered, ad hoc materializations included."""
    instance = context.instance
    # One cursor per kind of run ending: Dagster's run-status records, which every instance
    # storage (sharded SQLite included) can page through.
    cursors: dict[str, str | None] = json.loads(context.cursor) if context.cursor else {}
    if not cursors:
        for event_type in FINISHED_RUN_EVENTS:
            latest = instance.fetch_run_status_changes(event_type, limit=1)
            cursors[event_type.value] = latest.cursor if latest.records else None
        context.update_cursor(json.dumps(cursors))
        return dg.SkipReason("started: failed checks of runs finishing from now on are announced")
    announced = runs = 0
    for event_type in FINISHED_RUN_EVENTS:
        finished = instance.fetch_run_status_changes(
            event_type, limit=EVENTS_PER_TICK, cursor=cursors.get(event_type.value), ascending=True
        )
        for record in finished.records:
            runs += 1
            failed = failed_checks_of_run(instance, record.run_id)
            run = instance.get_run_by_id(record.run_id) if failed else None
            for entry in failed:
                evaluation = entry.dagster_event.asset_check_evaluation_data
                notifier.send(
                    failed_check_message(
                        asset=evaluation.asset_key.to_user_string(),
                        check=evaluation.check_name,
                        # A check of the asset (not daily) covers its run's day or range.
                        partition=evaluation.partition or (run and run_partition(run)),
                        severity=evaluation.severity.value,
                        description=evaluation.description,
                        run_id=entry.run_id,
                        job=entry.job_name,
                        ui_url=notifier.ui_url,
                    ),
                    log=context.log,
                )
                announced += 1
        if finished.records:
            cursors[event_type.value] = finished.cursor
    context.update_cursor(json.dumps(cursors))
    return dg.SkipReason(f"{announced} failed check(s) announced from {runs} finished run(s)")


def trailing_mean(
    rmse_by_day: dict[str, float], day: str, days: int
) -> tuple[float, list[str]] | None:
    """Mean RMSE of the evaluated days among the `days` days before `day`, and those days."""
    current = date.fromisoformat(day)
    earlier = sorted(
        key
        for key in rmse_by_day
        if current - timedelta(days=days) <= date.fromisoformat(key) < current
    )
    if not earlier:
        return None
    return sum(rmse_by_day[key] for key in earlier) / len(earlier), earlier


def _rmse_by_day(instance: dg.DagsterInstance, days: list[str]) -> dict[str, float]:
    """The latest evaluation RMSE of each of `days` that has one."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=MODEL_EVALUATION, asset_partitions=days),
        limit=len(days) * 20,
    ).records  # newest first: the first record seen for a day is its latest
    latest: dict[str, float] = {}
    for record in records:
        rmse = _metadata_values(record.event_log_entry).get("rmse")
        if record.partition_key and rmse is not None:
            latest.setdefault(record.partition_key, float(rmse))
    return latest


@dg.sensor(
    name="model_quality_regression_alert",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def model_quality_regression_alert(
    context: dg.SensorEvaluationContext, notifier: Notifier
) -> dg.SkipReason:
    """Announces a `model_evaluation` whose RMSE is worse than the mean of the days before it
    (`ML_ASSETS_RMSE_TRAILING_DAYS`, default 7) by more than `ML_ASSETS_RMSE_REGRESSION_MARGIN`
    (default 0.1, i.e. 10%). Days are compared by partition, whatever order they ran in."""
    instance = context.instance
    if context.cursor is None:
        latest = instance.fetch_materializations(MODEL_EVALUATION, limit=1).records
        context.update_cursor(str(latest[0].storage_id if latest else 0))
        return dg.SkipReason("started: evaluations from now on are compared")
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=MODEL_EVALUATION, after_storage_id=int(context.cursor)),
        limit=EVENTS_PER_TICK,
        ascending=True,
    ).records
    regressions = 0
    for record in records:
        day = record.partition_key
        rmse = _metadata_values(record.event_log_entry).get("rmse")
        if day and rmse is not None:
            current = date.fromisoformat(day)
            window = [
                (current - timedelta(days=offset)).isoformat()
                for offset in range(1, RMSE_TRAILING_DAYS + 1)
            ]
            trailing = trailing_mean(_rmse_by_day(instance, window), day, RMSE_TRAILING_DAYS)
            if trailing and is_regression(float(rmse), trailing[0], RMSE_REGRESSION_MARGIN):
                notifier.send(
                    model_regression_message(
                        partition=day,
                        rmse=float(rmse),
                        trailing_mean_rmse=trailing[0],
                        trailing_days=trailing[1],
                        margin=RMSE_REGRESSION_MARGIN,
                        run_id=record.run_id,
                        ui_url=notifier.ui_url,
                    ),
                    log=context.log,
                )
                regressions += 1
        context.update_cursor(str(record.storage_id))
    return dg.SkipReason(f"{regressions} regression(s) among {len(records)} new evaluation(s)")


alert_sensors: list[dg.SensorDefinition] = [
    run_failure_alert,
    run_success_alert,
    failed_check_alert,
    model_quality_regression_alert,
]
