"""After an ad hoc retrain, score the new model against the champion like any other model."""

from datetime import date, timedelta

import dagster as dg

from ml_assets.jobs import model_evaluation_job, retrain_job
from ml_assets.sensors.loop_reading import run_days


def evaluation_day_after(trained_through: str, materialized_feature_days: set[str]) -> str | None:
    """The day a model trained through `trained_through` is evaluated on, if its features exist."""
    next_day = (date.fromisoformat(trained_through) + timedelta(days=1)).isoformat()
    return next_day if next_day in materialized_feature_days else None


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[retrain_job],
    request_job=model_evaluation_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "When `retrain_job` has registered a model trained through day D, evaluate it on day D+1 "
        "against the champion (then `promotion_job` gates its promotion), as soon as day D+1's "
        "features exist. "
        "Until then the daily loop evaluates it when D+1 arrives."
    ),
)
def evaluate_retrained_model(
    context: dg.RunStatusSensorContext,
) -> dg.RunRequest | list[dg.RunRequest] | dg.SkipReason:
    run = context.dagster_run
    # A backfill of retrain_job trains all its days in one run.
    trained = [day.isoformat() for day in run_days(run.tags)]
    if not trained:
        return dg.SkipReason(f"run {run.run_id} retrained no daily partition")
    feature_days = context.instance.get_materialized_partitions(dg.AssetKey("trip_features"))
    requests = [
        dg.RunRequest(
            # One run of one day keeps the run's id as its key, as before ranges existed.
            run_key=run.run_id if len(trained) == 1 else f"{run.run_id} {day}",
            partition_key=evaluation_day,
            tags={"ml_assets/retrain_run": run.run_id},
        )
        for day in trained
        if (evaluation_day := evaluation_day_after(day, feature_days)) is not None
    ]
    if not requests:
        return dg.SkipReason(
            f"models trained through {trained[-1]}: the next day's trip_features are not "
            "materialized yet; the daily loop will evaluate them"
        )
    return requests[0] if len(trained) == 1 else requests
