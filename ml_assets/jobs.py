"""Jobs over the assets."""

import dagster as dg

from ml_assets.champion_jobs import champion_jobs

ml_loop_job = dg.define_asset_job(
    name="ml_loop_job",
    selection=dg.AssetSelection.assets(
        "raw_trips",
        "trip_features",
        "duration_model",
        "model_evaluation",
        "trip_duration_predictions",
    ),
    description=(
        "The whole daily loop for one day: ingest the day's trips, build features, train and "
        "register the day's model, evaluate yesterday's model on today and predict today."
    ),
)

retrain_job = dg.define_asset_job(
    name="retrain_job",
    selection=dg.AssetSelection.assets("duration_model"),
    description=(
        "Retrain the model of one day with the settings in the run config (model family, "
        "hyperparameters, training window, feature groups) and register it as a new version. "
        "The `evaluate_retrained_model` sensor then scores it against the champion on the next "
        "day, exactly as the daily loop scores every model."
    ),
    tags={"ml_assets/purpose": "ad_hoc_retrain"},
)

model_evaluation_job = dg.define_asset_job(
    name="model_evaluation_job",
    selection=dg.AssetSelection.assets("model_evaluation"),
    description=(
        "Score the model trained through the day before against the champion on the day's trips "
        "(the `promote_evaluated_day` sensor then runs `promotion_job`)."
    ),
)

daily_job = dg.define_asset_job(
    name="daily_job",
    selection=dg.AssetSelection.assets(
        "raw_trips", "trip_features", "model_evaluation", "trip_duration_predictions"
    ),
    description=(
        "Every morning, for the day before: ingest the day's trips, build its features, score "
        "yesterday's model against the champion on it and predict it (promotion_job, launched "
        "by the `promote_evaluated_day` sensor, then decides about yesterday's model). "
        "Steps that touch the network or MLflow retry with backoff; a run that dies (a lost "
        "worker, an out-of-memory kill) is retried from the failed step."
    ),
    tags={
        # Run-level retries (run_retries is enabled in deploy/dagster.yaml, jobs opt in here).
        "dagster/max_retries": "2",
        "dagster/retry_strategy": "FROM_FAILURE",
        # A step that failed after its own RetryPolicy gave up would fail again the same way:
        # run retries are for runs that crashed, not for steps that failed.
        "dagster/retry_on_asset_or_op_failure": "false",
    },
)

training_job = dg.define_asset_job(
    name="training_job",
    selection=dg.AssetSelection.assets("duration_model"),
    description=(
        "Train, log and register the model of one day on the trailing training window. "
        "Scheduled after the daily job; a backfill over many days is walk-forward retraining "
        "(one model per day, all days in one run), one training at a time (the `training` "
        "concurrency pool)."
    ),
)

ingestion_job = dg.define_asset_job(
    name="ingestion_job",
    selection=dg.AssetSelection.assets("raw_trips", "trip_features"),
    description=(
        "Ingest trips and build features for a range of days in one run (both assets have a "
        "single-run backfill policy); unchanged days are kept, not recomputed. Launched by the "
        "TLC publication sensor for each newly published or changed month."
    ),
)

promotion_job = dg.define_asset_job(
    name="promotion_job",
    selection=dg.AssetSelection.assets("challenger_validation", "model_promotion"),
    description=(
        "The promotion decision of one evaluated day: challenger_validation and the blocking "
        "checks of the promotion gate (the challenger beats the champion by "
        "ML_ASSETS_PROMOTION_MARGIN and beats the zone-pair baseline, by MLflow's model "
        "validation), then model_promotion (champion under "
        "auto approval, candidate under manual). A challenger that fails the gate fails this "
        "run, says why in the check, and leaves the champion where it was. Launched by the "
        "`promote_evaluated_day` sensor as soon as a day is evaluated."
    ),
)

jobs = [
    ml_loop_job,
    retrain_job,
    model_evaluation_job,
    daily_job,
    training_job,
    ingestion_job,
    promotion_job,
    *champion_jobs,
]
