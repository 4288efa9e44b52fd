"""Walk-forward order for the promotion gate: the decision of day D-1 is final before day D is
judged.

The gate of day D compares the challenger with the champion going into D, which the decision of
D-1 may change. In a backfill or a catch-up the promotion of D-1 can run after the evaluation (even
the validation) of D, so `challenger_validation` of D first waits, boundedly, for a pending
decision of D-1, and fails naming it if it stays pending. `trip_duration_predictions` of D waits
the same way in backfill and catch-up runs, so the day is served by the champion going into it.
"""

import time
from collections.abc import Callable, Mapping
from datetime import date, timedelta

import dagster as dg
from pydantic import Field

from ml_assets.assets.first_day import FIRST_DAY
from ml_assets.lib.catch_up import CATCH_UP_STEP_TAG

MODEL_EVALUATION = dg.AssetKey("model_evaluation")
CHALLENGER_VALIDATION = dg.AssetKey("challenger_validation")
MODEL_PROMOTION = dg.AssetKey("model_promotion")
DECISION_STEPS = (MODEL_EVALUATION, CHALLENGER_VALIDATION, MODEL_PROMOTION)

POLL_SECONDS = 1.0
"""How often a pending decision is looked at again while waiting for it: a handful of instance
queries, and in a backfill every day's decision waits on the one before, so each second between
looks is paid once per day."""

BACKFILL_TAG = "dagster/backfill"


class PreviousDecisionConfig(dg.Config):
    """How long a step of a day waits for the promotion decision of the day before."""

    previous_decision_wait_seconds: float = Field(
        default=600.0,
        ge=0.0,
        description=(
            "How long to wait for a pending promotion decision of the day before (its "
            "promotion_job not run yet, or running) before failing with what is pending; 0: "
            "fail at once."
        ),
    )


def runs_days_out_of_order(run_tags: Mapping[str, str]) -> bool:
    """Whether a run is part of a backfill or a catch-up, where a day can be scored before the
    decision of the day before: the backfill daemon and the catch-up sensor launch the days'
    scoring runs side by side, and the promotions follow them."""
    return BACKFILL_TAG in run_tags or CATCH_UP_STEP_TAG in run_tags


def _latest(instance: dg.DagsterInstance, asset: dg.AssetKey, day: str) -> dg.EventLogRecord | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset, asset_partitions=[day]), limit=1
    ).records
    return records[0] if records else None


def _metadata_flag(record: dg.EventLogRecord, name: str) -> bool:
    materialization = record.asset_materialization
    metadata = materialization.metadata if materialization else {}
    return getattr(metadata.get(name), "value", False) is True


def _passed_the_gate(validation: dg.EventLogRecord) -> bool:
    return all(
        _metadata_flag(validation, answer) for answer in ("beats_champion", "beats_baseline")
    )


def is_in_progress(
    instance: dg.DagsterInstance,
    asset: dg.AssetKey,
    day: str,
    partitions_def: dg.PartitionsDefinition,
) -> bool:
    """Whether a queued or running run is materializing `asset` of `day` (False for a day that
    is not a partition of it, such as the day before the first)."""
    if not partitions_def.has_partition_key(day):
        return False
    status = instance.get_status_by_partition(asset, [day], partitions_def) or {}
    return status.get(day) == dg.AssetPartitionStatus.IN_PROGRESS


def is_being_decided(
    instance: dg.DagsterInstance, day: str, run_id: str, evaluated_at: int
) -> bool:
    """Whether the promotion decision about the evaluation of `day` that run `run_id` recorded
    at storage id `evaluated_at` is left to another run: that run was planned to decide the day
    too (its `challenger_validation`, as in a backfill of the model group), it belongs to a
    backfill still running that targets `challenger_validation` (Dagster's daemon can request a
    day's gate in a later run than its evaluation), or the day was decided after that
    evaluation."""
    planned = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
    ).records
    if any(_plans(record, CHALLENGER_VALIDATION, day) for record in planned):
        return True
    if _running_backfill_decides(instance, run_id):
        return True
    validation = _latest(instance, CHALLENGER_VALIDATION, day)
    return validation is not None and validation.storage_id > evaluated_at


def _running_backfill_decides(instance: dg.DagsterInstance, run_id: str) -> bool:
    run = instance.get_run_by_id(run_id)
    backfill_id = run.tags.get(BACKFILL_TAG) if run else None
    backfill = instance.get_backfill(backfill_id) if backfill_id else None
    return (
        backfill is not None
        and backfill.status.value == "REQUESTED"
        and CHALLENGER_VALIDATION in (backfill.asset_selection or [])
    )


def _plans(record: dg.EventLogRecord, asset: dg.AssetKey, day: str) -> bool:
    event = record.event_log_entry.dagster_event
    return event is not None and event.asset_key == asset and event.partition == day


def pending_decision(
    instance: dg.DagsterInstance, day: str, partitions_def: dg.PartitionsDefinition
) -> str | None:
    """Why the promotion decision of `day` is not final yet, naming the step to run; None if it is
    (decided, or nothing to decide: no evaluation, the first day of the loop, or a day before)."""
    if not partitions_def.has_partition_key(day):
        return None
    for asset in DECISION_STEPS:
        if is_in_progress(instance, asset, day, partitions_def):
            return f"a run materializing {asset.to_user_string()} of {day} is queued or in progress"
    evaluation, validation, promotion = (_latest(instance, a, day) for a in DECISION_STEPS)
    if evaluation is not None and _metadata_flag(evaluation, FIRST_DAY):
        return None
    if evaluation is not None and (
        validation is None or validation.timestamp < evaluation.timestamp
    ):
        return (
            f"model_evaluation of {day} is newer than its challenger_validation: run "
            f"promotion_job for {day} first"
        )
    if (
        validation is not None
        and _passed_the_gate(validation)
        and (promotion is None or promotion.timestamp < validation.timestamp)
    ):
        return (
            f"challenger_validation of {day} passed the promotion gate but model_promotion of "
            f"{day} has not run since: run promotion_job for {day} first"
        )
    return None


def wait_for_decision_before(
    context: dg.AssetExecutionContext,
    day: date,
    wait_seconds: float,
    while_waiting: Callable[[], None] | None = None,
) -> None:
    """Return once the decision of the day before `day` is final; wait at most `wait_seconds`
    for it (a run of that day may be finishing), then fail naming what is pending.

    `while_waiting` runs once when there is a wait, before it: work the step does next anyway
    (imports), done while the decision is made instead of after it."""
    previous = (day - timedelta(days=1)).isoformat()
    asset = context.assets_def.key.to_user_string()
    partitions_def = context.assets_def.partitions_def
    if partitions_def is None:
        raise TypeError(f"{asset} must be daily partitioned")
    pending = pending_decision(context.instance, previous, partitions_def)
    if pending is None:
        return
    context.log.info(
        f"partition {day}: waiting up to {wait_seconds:g} s for the promotion decision of "
        f"{previous}: {pending}"
    )
    deadline = time.monotonic() + wait_seconds
    if while_waiting is not None:
        while_waiting()
        pending = pending_decision(context.instance, previous, partitions_def)
    while pending is not None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise dg.Failure(
                f"partition {day}: the promotion decision of {previous} is still pending after "
                f"{wait_seconds:g} s ({pending}); {asset} of {day} must use the champion that "
                f"decision leaves going into {day}. Then materialize {asset} of {day} again.",
                allow_retries=False,
            )
        time.sleep(min(POLL_SECONDS, remaining))
        pending = pending_decision(context.instance, previous, partitions_def)
    context.log.info(f"partition {day}: the promotion decision of {previous} is made")
