"""Reading the state of the daily loop from the Dagster instance, for catch-up, freshness and the
daily summary: which days each asset has, which runs work on which days, and which runs failed.
Which TLC months are published is `ml_assets.sensors.published_months`.

Only the instance's public API (materialized partitions, run records and tags, run event logs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime

import dagster as dg
from dagster import DagsterEventType, DagsterRunStatus

from ml_assets.lib.catch_up import CATCH_UP_STEP_TAG, Step, StepRuns, days_between
from ml_assets.lib.freshness import RunFacts
from ml_assets.sensors.check_alerts import failed_checks_of_run
from ml_assets.sensors.run_events import PARTITION_TAG, RANGE_TAGS, root_cause_message

LOOP_ASSETS = (
    "taxi_zones",
    "raw_trips",
    "trip_features",
    "duration_model",
    "model_evaluation",
    "trip_duration_predictions",
)

IN_PROGRESS = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]
RUNS_READ = 500
"""At most this many runs are read per query."""


def run_days(tags: Mapping[str, str]) -> list[date]:
    """The days a run works on: its partition, or every day of its range (a single-run backfill)."""
    try:
        if PARTITION_TAG in tags:
            return [date.fromisoformat(tags[PARTITION_TAG])]
        start, end = (tags.get(tag) for tag in RANGE_TAGS)
        if start and end:
            return days_between(date.fromisoformat(start), date.fromisoformat(end))
    except ValueError:  # a partition of another partitioning (not a day)
        pass
    return []


def materialized_days(instance: dg.DagsterInstance, first_day: date) -> dict[str, frozenset[date]]:
    """The days each loop asset has; `taxi_zones` (not partitioned) counts as `{first_day}` when it
    exists."""
    found: dict[str, frozenset[date]] = {}
    for name in LOOP_ASSETS:
        key = dg.AssetKey(name)
        if name == "taxi_zones":
            exists = instance.get_latest_materialization_event(key) is not None
            found[name] = frozenset({first_day}) if exists else frozenset()
            continue
        days = set()
        for partition in instance.get_materialized_partitions(key):
            try:
                days.add(date.fromisoformat(partition))
            except ValueError:
                continue
        found[name] = frozenset(days)
    return found


def catch_up_runs(instance: dg.DagsterInstance) -> dict[Step, StepRuns]:
    """The catch-up's runs by step: the days each is running, and the days whose latest run of the
    step failed or was canceled (with that run's id)."""
    steps: dict[Step, StepRuns] = {}
    for step in Step:
        running: set[date] = set()
        failed: dict[date, str] = {}
        seen: set[date] = set()
        records = instance.get_run_records(
            filters=dg.RunsFilter(tags={CATCH_UP_STEP_TAG: step.value}), limit=RUNS_READ
        )
        for record in records:  # newest first: the first run seen for a day is its latest
            run = record.dagster_run
            for day in run_days(run.tags) or ([date.min] if step == Step.zones else []):
                if day in seen:
                    continue
                seen.add(day)
                if run.status in IN_PROGRESS:
                    running.add(day)
                elif run.status in (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED):
                    failed[day] = run.run_id
        steps[step] = StepRuns(running=frozenset(running), failed=failed)
    return steps


def busy_days(instance: dg.DagsterInstance) -> frozenset[date]:
    """Days that runs not launched by the catch-up are working on now."""
    records = instance.get_run_records(filters=dg.RunsFilter(statuses=IN_PROGRESS), limit=RUNS_READ)
    return frozenset(
        day
        for record in records
        if CATCH_UP_STEP_TAG not in record.dagster_run.tags
        for day in run_days(record.dagster_run.tags)
    )


def _run_error(instance: dg.DagsterInstance, run_id: str) -> str | None:
    for entry in instance.all_logs(
        run_id, of_type={DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE}
    ):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type == DagsterEventType.STEP_FAILURE:
            return root_cause_message(event.step_failure_data.error)
        error = getattr(event.event_specific_data, "error", None)
        return root_cause_message(error) if error is not None else entry.message
    return None


def latest_runs_by_day(
    instance: dg.DagsterInstance, days: Iterable[date], since: datetime
) -> dict[date, RunFacts]:
    """The latest run (of any job) that worked on each of `days`, among runs updated after
    `since`; for a failed run, its error and failed checks."""
    wanted = set(days)
    records = instance.get_run_records(filters=dg.RunsFilter(updated_after=since), limit=RUNS_READ)
    latest: dict[date, RunFacts] = {}
    details: dict[str, RunFacts] = {}
    for record in records:  # newest first
        run = record.dagster_run
        for day in run_days(run.tags):
            if day not in wanted or day in latest:
                continue
            if run.run_id not in details:
                failed = run.status in (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)
                details[run.run_id] = RunFacts(
                    run_id=run.run_id,
                    job=run.job_name,
                    status=run.status.value,
                    error=_run_error(instance, run.run_id) if failed else None,
                    failed_checks=tuple(
                        f"{entry.dagster_event.asset_check_evaluation_data.check_name} on "
                        f"{entry.dagster_event.asset_check_evaluation_data.asset_key.to_user_string()}"
                        for entry in failed_checks_of_run(instance, run.run_id)
                    )
                    if failed
                    else (),
                )
            latest[day] = details[run.run_id]
    return latest


def failed_checks_since(instance: dg.DagsterInstance, since: datetime) -> list[str]:
    """`check on asset [partition]` of every failed check of runs updated after `since`."""
    records = instance.get_run_records(filters=dg.RunsFilter(updated_after=since), limit=RUNS_READ)
    found: list[str] = []
    for record in records:
        for entry in failed_checks_of_run(instance, record.dagster_run.run_id):
            evaluation = entry.dagster_event.asset_check_evaluation_data
            partition = evaluation.partition or next(
                (
                    record.dagster_run.tags[tag]
                    for tag in (PARTITION_TAG,)
                    if tag in record.dagster_run.tags
                ),
                None,
            )
            found.append(
                f"{evaluation.check_name} on {evaluation.asset_key.to_user_string()}"
                + (f" [{partition}]" if partition else "")
            )
    return sorted(set(found))
