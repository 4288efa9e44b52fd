"""The champion's sensors: promote each evaluated day, and notice the alias moved in MLflow."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from ml_assets.assets.previous_decision import (
    MODEL_EVALUATION,
    is_being_decided,
    is_in_progress,
)
from ml_assets.assets.promotion import champion_observation
from ml_assets.champion_jobs import decision_day
from ml_assets.jobs import promotion_job
from ml_assets.lib.mlflow_server import TrackingServerUnavailable
from ml_assets.lib.registry import RegistryError
from ml_assets.lib.registry_labels import Decision
from ml_assets.partitions import DailyPartitioning
from ml_assets.resources.mlflow import ModelRegistryResource

OUTSIDE_DAGSTER = "outside Dagster (the MLflow alias was moved)"


def _promotion_cursor(cursor: str | None) -> tuple[int | None, dict[str, list[Any]]]:
    """The storage id of the last evaluation seen, and the evaluated days not yet launched (with
    the run that evaluated each and the storage id of its evaluation)."""
    if not cursor:
        return None, {}
    state = json.loads(cursor)
    return state["after"], state["waiting"]


def build_promotion_sensor(days: DailyPartitioning) -> dg.SensorDefinition:
    """`promote_evaluated_day`: `promotion_job` for each day as soon as it is evaluated."""

    # A look every second (Dagster's default: 30 s; its sensor daemon looks every 5 s): in a
    # backfill or a catch-up every day's gate waits for the decision of the day before, so a
    # promotion launched early is ready when that decision lands. Days are launched in date order,
    # so a promotion waiting for the day before never holds the run slot that day's needs.
    @dg.sensor(
        name="promote_evaluated_day",
        job=promotion_job,
        minimum_interval_seconds=1,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Once a day is evaluated (model_evaluation materialized, by any job, backfill or "
            "catch-up), run `promotion_job` for it: the promotion gate's blocking checks, then "
            "model_promotion. A day whose day before is still being evaluated, or evaluated and "
            "not yet launched, waits here for it. A day whose run decides it too (a run or "
            "backfill that also materializes challenger_validation, such as a backfill of the "
            "model group) is left to that run."
        ),
    )
    def promote_evaluated_day(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        after, waiting = _promotion_cursor(context.cursor)
        evaluations = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=MODEL_EVALUATION, after_storage_id=after),
            limit=1 if after is None else 1000,
            ascending=after is not None,
        ).records
        if after is None:
            # First look: promote what is evaluated from now on, not the instance's history.
            latest = evaluations[0].storage_id if evaluations else 0
            return dg.SensorResult(cursor=json.dumps({"after": latest, "waiting": {}}))
        for record in evaluations:
            if record.partition_key is not None:
                waiting[record.partition_key] = [record.run_id, record.storage_id]
        requests = []
        for day in sorted(waiting):
            previous = (date.fromisoformat(day) - timedelta(days=1)).isoformat()
            if previous in waiting or is_in_progress(
                context.instance, MODEL_EVALUATION, previous, days.partitions
            ):
                continue
            evaluation_run, evaluation_event = waiting.pop(day)
            if is_being_decided(context.instance, day, evaluation_run, evaluation_event):
                continue  # another run decides it (its own, in a backfill of the model group)
            requests.append(
                dg.RunRequest(
                    run_key=f"{day} evaluated at event {evaluation_event}",
                    partition_key=day,
                    tags={"ml_assets/evaluation_run": evaluation_run},
                )
            )
        last = evaluations[-1].storage_id if evaluations else after
        return dg.SensorResult(
            run_requests=requests, cursor=json.dumps({"after": last, "waiting": waiting})
        )

    return promote_evaluated_day


@dg.sensor(
    name="champion_alias_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def champion_alias_sensor(
    context: dg.SensorEvaluationContext, model_registry: ModelRegistryResource
) -> dg.SensorResult | dg.SkipReason:
    """Notices when the MLflow alias `champion` was moved outside Dagster (in the MLflow UI or
    API): seen on two ticks in a row (so a promotion in progress is not mistaken for one), the
    change is recorded like a person's decision (`decision=moved_outside_dagster` on the version,
    an observation of `champion_model`), and the predictions of the days after the latest
    evaluated day use that version."""
    store = model_registry.tracking_uri.removeprefix("sqlite:///")
    if store != model_registry.tracking_uri and not Path(store).exists():
        # A local store nothing has written yet: opening it would create it under a run's feet.
        return dg.SkipReason(f"no MLflow store at {store} yet: no model registered")
    try:
        registry = model_registry.registry()
        aliased = registry.current_champion()
        recorded = registry.recorded_champion()
    except (RegistryError, TrackingServerUnavailable) as error:
        return dg.SkipReason(f"MLflow registry not readable, trying again next tick: {error}")
    if aliased is None or (recorded is not None and aliased.version == recorded.version):
        context.update_cursor(None)
        return dg.SkipReason(
            "the alias points at the recorded champion"
            if aliased
            else "no champion alias in the registry"
        )
    seen = json.loads(context.cursor) if context.cursor else {}
    if seen.get("alias") != aliased.version:
        context.update_cursor(json.dumps({"alias": aliased.version}))
        return dg.SkipReason(
            f"the alias points at v{aliased.version}, the recorded champion is "
            f"{'v' + recorded.version if recorded else 'none'}: confirming on the next tick"
        )
    day = decision_day(context.instance, registry, aliased.trained_through)
    decision = Decision(
        "moved_outside_dagster",
        day,
        OUTSIDE_DAGSTER,
        f"the MLflow alias `champion` was moved to v{aliased.version} outside Dagster "
        f"(the recorded champion was {'v' + recorded.version if recorded else 'none'})",
        {"version": aliased.version, "replaced_version": recorded.version if recorded else None},
    )
    champion = registry.choose(aliased.version, decision)
    context.update_cursor(None)
    context.log.info(decision.reason)
    return dg.SensorResult(asset_events=[champion_observation(champion, decision, model_registry)])
