"""Scoring one day in Prefect 3: the `daily` case's work, written as a Prefect user writes it.

A flow of tasks: read the day's trips from the cached month file, read the zones, build the
features, load the serving model named by the day's model evaluation from MLflow and predict,
write the predictions as parquet. Every task retries, is cached on its inputs and its source
(`INPUTS + TASK_SOURCE`) and persists its result (under `PREFECT_LOCAL_STORAGE_PATH`). Files are
passed with a stamp of their size and modification time, so a changed file is a new input.

Runs in the bench's Prefect environment (`bench/prefect_env.py`), never the project's:

    python bench/peers_prefect/daily_flow.py DATA_DIR DAY OUTPUT.parquet [--sample]

Prints `rows=N` and `cached=N` (task runs whose result came from the cache).
"""

import json
import sys
from datetime import date
from pathlib import Path

import polars as pl
from prefect import flow, task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from ml_assets.lib.features import trip_features_frame, trips_on_day
from ml_assets.lib.model import ALL_FEATURES
from ml_assets.lib.model_input import model_input
from ml_assets.lib.sample_source import sample_trips
from ml_assets.lib.storage import atomic_write
from ml_assets.lib.trip_schema import normalize_trips

CACHED = INPUTS + TASK_SOURCE
RETRIES = {"retries": 3, "retry_delay_seconds": 2}


def file_stamp(path: Path) -> str:
    """Size and modification time: part of a task's inputs, so a changed file misses the cache."""
    stat = path.stat()
    return f"{stat.st_size}-{stat.st_mtime_ns}"


@task(cache_policy=CACHED, persist_result=True, **RETRIES)
def day_trips(month_file: Path | None, month_stamp: str, day: date) -> pl.DataFrame:
    """The trips picked up on `day`, normalized (from the synthetic source without a file)."""
    if month_file is None:
        return sample_trips(day)
    month = normalize_trips(
        pl.read_parquet(month_file), taxi_type="green", source_name=month_file.name
    )
    return trips_on_day(month.lazy(), day).collect()


@task(cache_policy=CACHED, persist_result=True, **RETRIES)
def zones(zones_file: Path, zones_stamp: str) -> pl.DataFrame:
    """The taxi zone lookup."""
    return pl.read_parquet(zones_file)


@task(cache_policy=CACHED, persist_result=True, **RETRIES)
def features(trips: pl.DataFrame, zone_lookup: pl.DataFrame) -> pl.DataFrame:
    """Cleaned trips with the model's features."""
    return trip_features_frame(trips.lazy(), zone_lookup.lazy())


@task(cache_policy=CACHED, persist_result=True, **RETRIES)
def serving_model(evaluation_file: Path, evaluation_stamp: str) -> dict[str, str]:
    """The registered model the day's evaluation says to serve: its name and version."""
    serving = json.loads(evaluation_file.read_text())["serving_model"]
    return {"name": serving["name"], "version": str(serving["version"])}


@task(cache_policy=CACHED, persist_result=True, **RETRIES)
def predict(day_features: pl.DataFrame, model: dict[str, str], tracking_uri: str) -> pl.DataFrame:
    """Predicted trip durations of the day's trips, with the model version that made them."""
    import mlflow  # imported where it is used, as the project's prediction step does

    mlflow.set_tracking_uri(tracking_uri)
    pipeline = mlflow.sklearn.load_model(f"models:/{model['name']}/{model['version']}")
    predicted = pipeline.predict(model_input(day_features, ALL_FEATURES))
    return day_features.select(
        "trip_key", "pickup_datetime", "PULocationID", "DOLocationID", "trip_distance"
    ).with_columns(
        pl.Series("predicted_duration_min", predicted, dtype=pl.Float64),
        pl.lit(model["version"]).alias("model_version"),
    )


@task(cache_policy=CACHED, persist_result=True, **RETRIES)
def write_predictions(predictions: pl.DataFrame, output: Path) -> int:
    """Write the predictions as parquet, atomically; the number of rows written."""
    atomic_write(output, predictions.write_parquet)
    return predictions.height


@flow(name="score-day")
def score_day(data_dir: Path, day: date, output: Path, sample: bool = False) -> dict[str, int]:
    """Score every trip of `day` with the serving model; write them to `output`."""
    month_file = None if sample else data_dir / "cache" / f"green_tripdata_{day:%Y-%m}.parquet"
    zones_file = data_dir / "assets" / "taxi_zones.parquet"
    evaluation_file = data_dir / "assets" / "model_evaluation" / f"{day}.json"
    month_stamp = file_stamp(month_file) if month_file else "sample"
    # `return_state=True` keeps each task's state, to count the cache hits; `.result()` is what
    # a plain call would have returned.
    trips = day_trips(month_file, month_stamp, day, return_state=True)
    lookup = zones(zones_file, file_stamp(zones_file), return_state=True)
    day_features = features(trips.result(), lookup.result(), return_state=True)
    model = serving_model(evaluation_file, file_stamp(evaluation_file), return_state=True)
    tracking_uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    predictions = predict(day_features.result(), model.result(), tracking_uri, return_state=True)
    written = write_predictions(predictions.result(), output, return_state=True)
    states = [trips, lookup, day_features, model, predictions, written]
    return {"rows": written.result(), "cached": sum(state.name == "Cached" for state in states)}


if __name__ == "__main__":
    summary = score_day(
        Path(sys.argv[1]),
        date.fromisoformat(sys.argv[2]),
        Path(sys.argv[3]),
        sample="--sample" in sys.argv[4:],
    )
    print(f"rows={summary['rows']} cached={summary['cached']}")
