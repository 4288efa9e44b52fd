"""`failed_check_alert`: a message for every failed asset check, once its run has finished."""

from __future__ import annotations

import dagster as dg
from dagster import DagsterEventType

from ml_assets.lib.notifications import failed_check_message
from ml_assets.resources.notifier import Notifier
from ml_assets.sensors.run_events import (
    job_label,
    new_run_endings,
    run_partition,
    selected_assets,
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
    new = new_run_endings(instance, context.cursor, FINISHED_RUN_EVENTS)
    context.update_cursor(new.cursor)
    if new.started:
        return dg.SkipReason("started: failed checks of runs finishing from now on are announced")
    announced = 0
    for ending in new.endings:
        failed = failed_checks_of_run(instance, ending.run_id)
        run = instance.get_run_by_id(ending.run_id) if failed else None
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
                    job=entry.job_name
                    and job_label(entry.job_name, selected_assets(instance, run)),
                    ui_url=notifier.ui_url,
                ),
                log=context.log,
            )
            announced += 1
    runs = len(new.endings)
    return dg.SkipReason(f"{announced} failed check(s) announced from {runs} finished run(s)")
