"""Runs never stay stuck: a run whose process died is marked failed, and a run that waits too long
in the queue or on a pool is announced.

- `stuck_run_monitor` looks at every STARTED run whose orchestrating process was recorded on this
  machine (the `ml_assets/run_process` tag, see `ml_assets.run_process`). When that process is gone
  (killed, out of memory, the machine restarted) the run is marked failed with a message saying so.
  Its RUN_FAILURE event is announced by `run_failure_alert` like any failure, Dagster's run retries
  re-execute it where the job allows (`dagster/max_retries`), and its concurrency slots are freed.
  Dagster's own run monitoring cannot do this with the default run launcher. Runs recorded on other
  machines (Celery or Kubernetes workers) are left to their own launcher's monitoring.
- `waiting_run_alert` announces, once each, a run QUEUED longer than `ML_ASSETS_QUEUED_ALERT_MINUTES`
  and a step blocked on a pool longer than `ML_ASSETS_POOL_WAIT_ALERT_MINUTES` (default 60 each).
"""

import json
from datetime import UTC, datetime

import dagster as dg
from dagster import DagsterEventType, DagsterRunStatus

from ml_assets.lib.run_health import (
    Liveness,
    ProcessIdentity,
    Waiting,
    WaitLimits,
    check_process,
    dead_run_message,
    overdue,
    run_partition,
    waiting_message,
)
from ml_assets.resources.notifier import Notifier

RUNS_PER_TICK = 200
"""At most this many runs of each status are looked at per tick."""

POOL_BLOCKED_PREFIX = "Step blocked by limit for pool "


def _started_at(record: dg.RunRecord) -> datetime | None:
    return datetime.fromtimestamp(record.start_time, UTC) if record.start_time else None


def stuck_run_monitor_sensor(minimum_interval_seconds: int = 30) -> dg.SensorDefinition:
    """The `stuck_run_monitor` sensor, checking every `minimum_interval_seconds`: a run whose
    process died is marked failed within about that long."""

    @dg.sensor(
        name="stuck_run_monitor",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def stuck_run_monitor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        """Marks failed every started run whose process on this machine has died (killed, out of
        memory, machine restarted), so it does not stay "started" forever holding its concurrency
        slots. The failure is announced by `run_failure_alert` and retried where the job allows."""
        instance = context.instance
        records = instance.get_run_records(
            filters=dg.RunsFilter(statuses=[DagsterRunStatus.STARTED]), limit=RUNS_PER_TICK
        )
        failed: list[str] = []
        unrecorded = elsewhere = 0
        for record in records:
            run = record.dagster_run
            identity = ProcessIdentity.from_tags(run.run_id, run.tags)
            if identity is None:
                unrecorded += 1
                continue
            verdict = check_process(identity)
            if verdict.liveness == Liveness.other_host:
                elsewhere += 1
                continue
            if verdict.liveness != Liveness.gone:
                continue
            # A run that ends normally records its end before its process exits: read its status
            # again now that the process is known to be gone, so a run that just finished is kept.
            current = instance.get_run_by_id(run.run_id)
            if current is None or current.status != DagsterRunStatus.STARTED:
                continue
            message = dead_run_message(identity, verdict.reason, _started_at(record))
            context.log.warning(f"run {run.run_id} ({run.job_name}): {message}")
            instance.report_run_failed(current, message)
            failed.append(run.run_id)
        return dg.SkipReason(
            f"{len(records)} started run(s): {len(failed)} marked failed "
            f"({', '.join(failed) or 'none'}), {elsewhere} on other machines, "
            f"{unrecorded} without a recorded process"
        )

    return stuck_run_monitor


def _queued_waits(instance: dg.DagsterInstance) -> list[Waiting]:
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=[DagsterRunStatus.QUEUED]), limit=RUNS_PER_TICK
    )
    return [
        Waiting(
            run_id=record.dagster_run.run_id,
            job=record.dagster_run.job_name,
            partition=run_partition(record.dagster_run.tags),
            since=record.create_timestamp.astimezone(UTC),
        )
        for record in records
    ]


def _pool_of(entry: dg.EventLogEntry) -> str | None:
    """The pool an engine event says its step is blocked on, if it says so."""
    message = entry.dagster_event.message if entry.dagster_event else None
    for prefix in (POOL_BLOCKED_PREFIX, "Step still blocked by limit for pool "):
        if message and message.startswith(prefix):
            return message[len(prefix) :].strip()
    return None


def pool_waits(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[Waiting]:
    """The steps of a started run that are blocked on a pool now, each since its first
    "blocked by limit for pool" event after it last started (if it did)."""
    blocked: dict[str, tuple[str, float]] = {}
    for entry in instance.all_logs(
        run.run_id, of_type={DagsterEventType.ENGINE_EVENT, DagsterEventType.STEP_START}
    ):
        step = entry.step_key
        if step is None:
            continue
        if entry.dagster_event and entry.dagster_event.event_type == DagsterEventType.STEP_START:
            blocked.pop(step, None)
        elif (pool := _pool_of(entry)) is not None and step not in blocked:
            blocked[step] = (pool, entry.timestamp)
    return [
        Waiting(
            run_id=run.run_id,
            job=run.job_name,
            partition=run_partition(run.tags),
            since=datetime.fromtimestamp(timestamp, UTC),
            pool=pool,
            step=step,
        )
        for step, (pool, timestamp) in blocked.items()
    ]


def waiting_run_alert_sensor(
    limits: WaitLimits, minimum_interval_seconds: int = 60
) -> dg.SensorDefinition:
    """The `waiting_run_alert` sensor, with the waits of `limits`."""

    @dg.sensor(
        name="waiting_run_alert",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Announces once a run queued longer than {limits.queued_minutes:g} min "
            f"(ML_ASSETS_QUEUED_ALERT_MINUTES) and a step blocked on a pool longer than "
            f"{limits.pool_minutes:g} min (ML_ASSETS_POOL_WAIT_ALERT_MINUTES)."
        ),
    )
    def waiting_run_alert(context: dg.SensorEvaluationContext, notifier: Notifier) -> dg.SkipReason:
        instance = context.instance
        now = datetime.now(UTC)
        late = [
            (wait, limits.queued_minutes)
            for wait in overdue(_queued_waits(instance), limits.queued_minutes, now)
        ]
        started = instance.get_run_records(
            filters=dg.RunsFilter(statuses=[DagsterRunStatus.STARTED]), limit=RUNS_PER_TICK
        )
        for record in started:
            waits = pool_waits(instance, record.dagster_run)
            late.extend(
                (wait, limits.pool_minutes) for wait in overdue(waits, limits.pool_minutes, now)
            )
        # Announced waits stay in the cursor while they last, so each is announced once; a wait
        # that has ended is dropped from it.
        announced = set(json.loads(context.cursor)) if context.cursor else set()
        still_late = {wait.key for wait, _ in late}
        new = [(wait, limit) for wait, limit in late if wait.key not in announced]
        for wait, limit in new:
            notifier.send(
                waiting_message(wait, now=now, limit_minutes=limit, ui_url=notifier.ui_url),
                log=context.log,
            )
        context.update_cursor(json.dumps(sorted(still_late)))
        return dg.SkipReason(f"{len(new)} new wait(s) announced, {len(still_late)} overdue in all")

    return waiting_run_alert


def run_health_sensors(limits: WaitLimits) -> list[dg.SensorDefinition]:
    """`stuck_run_monitor` and `waiting_run_alert`."""
    return [stuck_run_monitor_sensor(), waiting_run_alert_sensor(limits)]
