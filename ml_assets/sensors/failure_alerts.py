"""`run_failure_alert`: a message for every failed run of the instance, whatever launched it."""

from __future__ import annotations

import dagster as dg
from dagster import DagsterEventType

from ml_assets.lib.notifications import Notification, run_failure_message
from ml_assets.resources.notifier import Notifier
from ml_assets.sensors.run_events import (
    job_label,
    new_run_endings,
    root_cause_message,
    run_partition,
    selected_assets,
)


def failure_notification(
    instance: dg.DagsterInstance, failure: dg.EventLogRecord, ui_url: str
) -> Notification:
    """The message of one RUN_FAILURE record: job, partition or range, failing steps, the root
    cause of the first step failure (or of the run's own failure) and the run's link."""
    run_id = failure.run_id
    run = instance.get_run_by_id(run_id)
    step_failures = [
        entry.dagster_event
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE)
        if entry.dagster_event is not None
    ]
    failing_steps = list(dict.fromkeys(event.step_key for event in step_failures if event.step_key))
    run_event = failure.event_log_entry.dagster_event
    # The first step failure says why; a run that failed outside any step (its launch, a lost
    # worker, run monitoring) carries its own error, or at least a message.
    step_error = step_failures[0].step_failure_data.error if step_failures else None
    run_error = getattr(run_event and run_event.event_specific_data, "error", None)
    if step_error is not None:
        error = root_cause_message(step_error)
    elif run_error is not None:
        error = root_cause_message(run_error)
    else:
        error = failure.event_log_entry.message
    job_name = run.job_name if run else failure.event_log_entry.job_name or "(unknown job)"
    return run_failure_message(
        job=job_label(job_name, selected_assets(instance, run)),
        run_id=run_id,
        partition=run_partition(run) if run else None,
        failing_steps=failing_steps,
        error=error,
        ui_url=ui_url,
    )


@dg.sensor(
    name="run_failure_alert",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def run_failure_alert(context: dg.SensorEvaluationContext, notifier: Notifier) -> dg.SkipReason:
    """Announces every failed run in the Dagster instance, once: job, partition or range, the
    failing step(s), the root-cause error and a link to the run in the UI.

    Runs of every origin are covered: launched from the UI, a schedule, a sensor or a backfill,
    and runs started outside any code location (`dagster asset materialize`,
    `dagster job execute`, `materialize` in a script or test), which Dagster's
    `run_failure_sensor` never sees. Turned on for the first time, it starts from that moment.
    """
    new = new_run_endings(context.instance, context.cursor, [DagsterEventType.RUN_FAILURE])
    context.update_cursor(new.cursor)
    if new.started:
        return dg.SkipReason("started: runs failing from now on are announced")
    # A run has one RUN_FAILURE; should storage ever hold two, the run is still announced once.
    run_ids = list(dict.fromkeys(ending.run_id for ending in new.endings))
    records = {ending.run_id: ending.record for ending in reversed(new.endings)}
    for run_id in run_ids:
        notifier.send(
            failure_notification(context.instance, records[run_id], notifier.ui_url),
            log=context.log,
        )
    return dg.SkipReason(f"{len(run_ids)} failed run(s) announced")
