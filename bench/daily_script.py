"""The daily scoring job as a plain Python script, the yardstick for the `daily` case.

It does the work `raw_trips`, `trip_features` and `trip_duration_predictions` do for one day,
with no orchestration: read the day's trips, build the features, load the serving model from
MLflow, predict and write the predictions as parquet.

    python bench/daily_script.py DATA_DIR DAY OUTPUT.parquet [--sample]
"""

import json
import sys
from datetime import date
from pathlib import Path

import mlflow
import polars as pl

from ml_assets.lib.features import trip_features_frame, trips_on_day
from ml_assets.lib.model import ALL_FEATURES
from ml_assets.lib.model_input import model_input
from ml_assets.lib.sample_source import sample_trips
from ml_assets.lib.trip_schema import normalize_trips


def main(data_dir: Path, day: date, output: Path, sample: bool) -> None:
    if sample:
        trips = sample_trips(day)
    else:
        month_file = data_dir / "cache" / f"green_tripdata_{day:%Y-%m}.parquet"
        month = normalize_trips(
            pl.read_parquet(month_file), taxi_type="green", source_name=month_file.name
        )
        trips = trips_on_day(month.lazy(), day).collect()
    zones = pl.read_parquet(data_dir / "assets" / "taxi_zones.parquet")
    features = trip_features_frame(trips.lazy(), zones.lazy())

    evaluation = json.loads((data_dir / "assets" / "model_evaluation" / f"{day}.json").read_text())
    serving = evaluation["serving_model"]
    mlflow.set_tracking_uri(f"sqlite:///{data_dir / 'mlflow.db'}")
    model = mlflow.sklearn.load_model(f"models:/{serving['name']}/{serving['version']}")

    predicted = model.predict(model_input(features, ALL_FEATURES))
    predictions = features.select(
        "trip_key", "pickup_datetime", "PULocationID", "DOLocationID", "trip_distance"
    ).with_columns(
        pl.Series("predicted_duration_min", predicted, dtype=pl.Float64),
        pl.lit(serving["version"]).alias("model_version"),
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    predictions.write_parquet(output)
    print(f"{day}: {predictions.height} trips scored with model v{serving['version']}")


if __name__ == "__main__":
    main(
        Path(sys.argv[1]),
        date.fromisoformat(sys.argv[2]),
        Path(sys.argv[3]),
        sample="--sample" in sys.argv[4:],
    )
