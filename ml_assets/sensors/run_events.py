"""Reading runs for the alert sensors: which runs ended since the last tick, which day or range a
run covered, what its job is called and why it failed.

Everything here goes through the Dagster instance's public API (run-status records, a run's event
log and tags), so it sees every run stored in the instance, whatever launched it: the UI, a
schedule, a sensor, a backfill, `dagster asset materialize` / `dagster job execute`, or a test's
in-process `materialize`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import dagster as dg
from dagster import DagsterEventType

EVENTS_PER_TICK = 25
"""At most this many run endings of each kind are read per tick; the rest wait for the next one."""

PARTITION_TAG = "dagster/partition"
RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
HIDDEN_JOB_PREFIX = "__"
"""Dagster's implicit jobs of ad hoc materializations are named so: `__ASSET_JOB` (the UI,
`dagster asset materialize`) and `__ephemeral_asset_job__` (`materialize` in Python)."""


class ErrorInfo(Protocol):
    """What alerts read of an error Dagster recorded: its message and the error that caused it."""

    message: str
    cause: ErrorInfo | None


def root_cause_message(error: ErrorInfo) -> str:
    """The user's exception, not Dagster's "error occurred while executing op" wrapper."""
    while error.cause is not None:
        error = error.cause
    return error.message


def run_partition(run: dg.DagsterRun) -> str | None:
    """The run's partition, or `first..last` for a run over a range (a single-run backfill)."""
    if PARTITION_TAG in run.tags:
        return run.tags[PARTITION_TAG]
    start, end = (run.tags.get(tag) for tag in RANGE_TAGS)
    return f"{start}..{end}" if start and end else None


def selected_assets(instance: dg.DagsterInstance, run: dg.DagsterRun | None) -> list[str]:
    """The assets a run set out to materialize: its asset selection, or (a run of `materialize`
    records none) the assets it planned to materialize."""
    if run is None:
        return []
    keys = set(run.asset_selection or ())
    if not keys:
        planned = instance.all_logs(
            run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED
        )
        keys = {entry.dagster_event.asset_key for entry in planned if entry.dagster_event}
    return sorted(key.to_user_string() for key in keys if key is not None)


def job_label(job_name: str, assets: Sequence[str] = (), most: int = 3) -> str:
    """The run's job as a reader knows it: ad hoc materializations (Dagster's hidden
    `__ASSET_JOB` and `__ephemeral_asset_job__`) are named after their `assets`."""
    if not job_name.startswith(HIDDEN_JOB_PREFIX):
        return job_name
    if not assets:
        return "ad hoc materialization"
    shown = ", ".join(assets[:most])
    more = f" and {len(assets) - most} more" if len(assets) > most else ""
    return f"materialize {shown}{more}"


def metadata_values(entry: dg.EventLogEntry) -> dict[str, Any]:
    """The raw values of a materialization's metadata (empty for any other event)."""
    materialization = entry.asset_materialization
    if materialization is None:
        return {}
    return {key: value.value for key, value in materialization.metadata.items()}


@dataclass(frozen=True)
class RunEnded:
    """One run-status record read from the instance: the run ended this way."""

    event_type: DagsterEventType
    record: dg.EventLogRecord

    @property
    def run_id(self) -> str:
        return self.record.run_id


@dataclass(frozen=True)
class NewRunEndings:
    """The run endings recorded since the cursor, and the cursor to store for the next tick."""

    cursor: str
    endings: list[RunEnded] = field(default_factory=list)
    started: bool = False
    """True on a sensor's first tick (or after its cursor was of another format): nothing is read,
    the cursor is set to the latest ending, and runs ending from then on are read."""


def _stored_cursors(
    cursor: str | None, event_types: Sequence[DagsterEventType]
) -> dict[str, str | None] | None:
    """The per-kind cursors of a JSON sensor cursor, or None if there is none of this format.

    A cursor written by something else (before this sensor was a plain sensor, the daemon stored
    a `run_failure_sensor`'s cursor under the same name) counts as none: the sensor starts over.
    """
    if not cursor:
        return None
    try:
        stored = json.loads(cursor)
    except ValueError:
        return None
    if not isinstance(stored, dict) or any(kind.value not in stored for kind in event_types):
        return None
    return {kind.value: stored[kind.value] for kind in event_types}


def new_run_endings(
    instance: dg.DagsterInstance,
    cursor: str | None,
    event_types: Sequence[DagsterEventType],
    limit: int = EVENTS_PER_TICK,
) -> NewRunEndings:
    """The run endings of `event_types` (e.g. RUN_FAILURE) recorded after `cursor`, oldest first.

    The cursor holds one position per kind of ending in Dagster's run-status records, which every
    instance storage (sharded SQLite included) can page through; a record is read once however
    many ticks or daemon restarts follow.
    """
    cursors = _stored_cursors(cursor, event_types)
    if cursors is None:
        latest_of = {kind: instance.fetch_run_status_changes(kind, limit=1) for kind in event_types}
        start = {kind.value: (r.cursor if r.records else None) for kind, r in latest_of.items()}
        return NewRunEndings(cursor=json.dumps(start), started=True)
    endings: list[RunEnded] = []
    for kind in event_types:
        page = instance.fetch_run_status_changes(
            kind, limit=limit, cursor=cursors[kind.value], ascending=True
        )
        endings.extend(RunEnded(kind, record) for record in page.records)
        if page.records:
            cursors[kind.value] = page.cursor
    return NewRunEndings(cursor=json.dumps(cursors), endings=endings)
