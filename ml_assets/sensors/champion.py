"""The champion's sensors: promote each evaluated day, and notice the alias moved in MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from ml_assets.assets.promotion import champion_observation
from ml_assets.champion_jobs import decision_day
from ml_assets.jobs import promotion_job
from ml_assets.lib.mlflow_server import TrackingServerUnavailable
from ml_assets.lib.registry import RegistryError
from ml_assets.lib.registry_labels import Decision
from ml_assets.resources.mlflow import ModelRegistryResource

MODEL_EVALUATION = dg.AssetKey("model_evaluation")
OUTSIDE_DAGSTER = "outside Dagster (the MLflow alias was moved)"


# Every job of the code location is watched, not a list: the catch-up sensor and backfills score
# days in runs of Dagster's asset jobs, and their evaluations must be promoted too. It looks every
# 5 s (Dagster's default: 30 s): in a backfill or a catch-up the gate of the next day waits for
# this day's decision, so each look saved is time the walk-forward loop does not wait.
@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    request_job=promotion_job,
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "After a run that evaluated a day succeeded, run `promotion_job` for that day: the "
        "promotion gate's blocking checks, then model_promotion."
    ),
)
def promote_evaluated_day(context: dg.RunStatusSensorContext):
    run = context.dagster_run
    day = run.tags.get("dagster/partition")
    evaluated = [
        entry
        for entry in context.instance.all_logs(
            run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        )
        if entry.asset_materialization is not None
        and entry.asset_materialization.asset_key == MODEL_EVALUATION
    ]
    if day is None or not evaluated:
        return dg.SkipReason(f"run {run.run_id} evaluated no day")
    return dg.RunRequest(
        run_key=run.run_id, partition_key=day, tags={"ml_assets/evaluation_run": run.run_id}
    )


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


champion_sensors = [promote_evaluated_day, champion_alias_sensor]
