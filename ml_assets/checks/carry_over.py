"""Checks that would see exactly what they saw last time carry their results over, reading nothing.

A re-run of a backfill over unchanged inputs keeps every stored day (`ml_assets.assets.
partition_cache`); checking those days again would read them all back and give the same results.
So each evaluation of the asset checks of `raw_trips` and `trip_features` records an
`inputs_fingerprint`: the identity of every file it read (name, size and modification time: a
day that is rewritten gets a new file, atomically) and the source of the check code itself. When
a run's checks find the same fingerprint on their latest evaluations, they report those results
again, marked `cached` with the run that computed them, without loading a single day.
"""

import functools
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from ml_assets.assets.partition_cache import CACHED, COMPUTED_IN_RUN
from ml_assets.lib.fingerprint import fingerprint
from ml_assets.resources.parquet_io_manager import PartitionedFileIOManager

INPUTS_FINGERPRINT = "inputs_fingerprint"

CHECK_CODE_MODULES = (
    "ml_assets.checks.raw_trips",
    "ml_assets.checks.trip_features",
    "ml_assets.checks.results",
    "ml_assets.checks.carry_over",
    "ml_assets.lib.quality",
    "ml_assets.lib.schemas",
    "ml_assets.lib.trip_schema",
    "ml_assets.lib.features",
)
"""What decides a check's result besides its data: any change to these files re-runs the checks."""


def _source(module: str) -> str:
    # Read, not imported: ml_assets.lib.schemas imports pandera, which only check steps need.
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(module)
    return Path(spec.origin).read_text()


@functools.cache
def check_code_version() -> str:
    """A fingerprint of the check code, read once per process when a check first needs it."""
    return fingerprint(*(_source(module) for module in CHECK_CODE_MODULES))


def inputs_fingerprint(
    io_manager: PartitionedFileIOManager, assets: Sequence[dg.AssetKey], days: Sequence[str]
) -> str | None:
    """Identifies the stored files of `days` of `assets` and the check code; None if one is missing."""
    parts = [check_code_version()]
    for asset_key in assets:
        for day in days:
            path = io_manager.stored_path(asset_key, day)
            if path is None:
                return None
            stat = path.stat()
            parts += [str(path), str(stat.st_size), str(stat.st_mtime_ns)]
    return fingerprint(*parts)


def _latest_completed(
    instance: dg.DagsterInstance, check_keys: Sequence[dg.AssetCheckKey]
) -> dict[dg.AssetCheckKey, Any]:
    """The latest execution of each of `check_keys` that produced a result (not planned, running
    or skipped), by key; a check that never produced one is left out.

    Not "the latest execution": the run asking has already planned its own, and Dagster plans an
    execution of a check of the asset for every partition of a range run too, so a 90-day run's
    latest completed evaluation lies behind 90 planned ones of the run in progress.
    """
    summaries = instance.event_log_storage.get_asset_check_summary_records(check_keys)
    return {
        key: summary.last_completed_check_execution_record
        for key, summary in summaries.items()
        if summary.last_completed_check_execution_record is not None
    }


def carried_results(
    instance: dg.DagsterInstance, check_keys: Sequence[dg.AssetCheckKey], inputs: str | None
) -> list[dg.AssetCheckResult] | None:
    """The latest results of `check_keys` again, if every one was computed from `inputs`."""
    if inputs is None:
        return None
    completed = _latest_completed(instance, check_keys)
    carried = []
    for check_key in check_keys:
        latest = completed.get(check_key)
        event = latest.event if latest else None
        evaluation = (
            event.dagster_event.event_specific_data if event and event.dagster_event else None
        )
        if not isinstance(evaluation, dg.AssetCheckEvaluation):
            return None
        recorded = evaluation.metadata.get(INPUTS_FINGERPRINT)
        if recorded is None or recorded.value != inputs:
            return None
        computed_in = evaluation.metadata.get(COMPUTED_IN_RUN)
        carried.append(
            dg.AssetCheckResult(
                asset_key=check_key.asset_key,
                check_name=check_key.name,
                passed=evaluation.passed,
                severity=evaluation.severity,
                description=evaluation.description,
                metadata={
                    **evaluation.metadata,
                    CACHED: True,
                    COMPUTED_IN_RUN: computed_in.value if computed_in else latest.run_id,
                },
            )
        )
    return carried


def fresh(result: dg.AssetCheckResult, inputs: str | None) -> dg.AssetCheckResult:
    """`result` of a check that has just run, recording what it saw."""
    recorded = {INPUTS_FINGERPRINT: inputs} if inputs is not None else {}
    return result.with_metadata({**result.metadata, **recorded, CACHED: False})
