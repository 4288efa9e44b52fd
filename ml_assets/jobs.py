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

jobs = [ml_loop_job]
