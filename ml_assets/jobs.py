"""Jobs over the assets."""

import dagster as dg

from ml_assets.partitions import daily_partitions

ml_loop_job = dg.define_asset_job(
    name="ml_loop_job",
    selection=dg.AssetSelection.assets(
        "raw_trips",
        "trip_features",
        "duration_model",
        "model_evaluation",
        "trip_duration_predictions",
    ),
    partitions_def=daily_partitions,
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
        "Score the model trained through the day before against the champion on the day's trips, "
        "and promote it if it wins."
    ),
)

jobs = [ml_loop_job, retrain_job, model_evaluation_job]
