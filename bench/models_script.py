"""The walk-forward model loop as a plain Python script, the yardstick for the `models` case.

Day by day in one process, with no orchestration, it does what `duration_model`,
`model_evaluation`, `trip_duration_predictions` and the promotion the `promote_evaluated_day`
sensor launches after them do for each day D of a backfill:

1. train: the model of D on the trailing window of `trip_features` (the last day held out to
   validate against the zone-pair baseline, then refit on the whole window);
2. MLflow: one MLflow run with the same params, metrics, tags and model (signature, input example,
   pinned pip requirements, skops trusted types), registered as a new version tagged
   `trained_through=D`;
3. evaluate: the model of D-1 (the challenger) and the champion going into D scored on D's trips
   next to the zone-pair baseline, with `mlflow.models.evaluate`, the four reports logged to a
   nested MLflow run;
4. promote: the promotion gate (MLflow's model validation) and, when the challenger passes, the
   registry's promotion of it (alias, labels, the decision);
5. predict: D's trips scored by the champion going into D (the challenger on the first day),
   written as parquet.

One module past 250 lines on purpose: it is one loop, read top to bottom as the yardstick, and the
steps it mirrors live in four Dagster modules.

Reads the `trip_features` parquet files of a Dagster data directory; writes to its own MLflow
store (`MLFLOW_DIR/mlflow.db`, artifacts beside it) and `MLFLOW_DIR/predictions/`. Prints one line
of JSON per day (`day_seconds`: seconds by phase) and `work_seconds=...`, the time after imports.

    python bench/models_script.py DATA_DIR MLFLOW_DIR FIRST_DAY LAST_DAY [--window-days N]
    python bench/models_script.py DATA_DIR MLFLOW_DIR DAY DAY --train-only   # set-up: model of DAY
"""

import argparse
import json
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import mlflow
import numpy
import pandas
import polars as pl
import sklearn
import skops.io
from mlflow.models import infer_signature

from ml_assets.lib.day_model import fit_day_model
from ml_assets.lib.evaluation_reports import DayError, write_reports
from ml_assets.lib.features import TARGET
from ml_assets.lib.model import TrainedModel, ZonePairBaseline, regression_metrics
from ml_assets.lib.model_input import model_input
from ml_assets.lib.model_params import ALL_FEATURES, ModelParams
from ml_assets.lib.promotion_gate import gate, mlflow_regression_metrics
from ml_assets.lib.registry import ModelRegistry, RegisteredModel
from ml_assets.lib.registry_labels import TRAINED_THROUGH_TAG, Decision

MODEL_NAME = "nyc-taxi-trip-duration"
EXPERIMENT = "ml_assets"
PIP_REQUIREMENTS = [
    f"scikit-learn=={sklearn.__version__}",
    f"pandas=={pandas.__version__}",
    f"numpy=={numpy.__version__}",
    f"mlflow=={mlflow.__version__}",
]


def read_features(data_dir: Path, first: date, last: date) -> pl.DataFrame:
    """The `trip_features` of `first..last` that exist (the windows start before the first day)."""
    files = [
        data_dir / "assets" / "trip_features" / f"{first + timedelta(days=n)}.parquet"
        for n in range((last - first).days + 1)
    ]
    return pl.read_parquet([path for path in files if path.exists()])


def train_and_register(
    features: pl.DataFrame, day: date, window_days: int, registry: ModelRegistry
) -> tuple[RegisteredModel, dict[str, float]]:
    """What `duration_model` does for `day`: seconds by phase (`train`, `mlflow`)."""
    started = time.perf_counter()
    params = ModelParams()
    fitted = fit_day_model(features, params)
    trained = time.perf_counter()

    with mlflow.start_run(run_name=f"day {day}"):
        mlflow.log_params(
            {
                **params.as_mlflow_params(),
                "window_days": str(window_days),
                "window_start": fitted.window_start,
                "window_end": fitted.window_end,
            }
        )
        mlflow.log_metrics(fitted.metrics)
        mlflow.set_tags({"dagster_partition": str(day), "dagster_asset": "duration_model"})
        registered = log_and_register(fitted.model, features, registry, day)
    return registered, {"train": trained - started, "mlflow": time.perf_counter() - trained}


def log_and_register(
    model: TrainedModel, features: pl.DataFrame, registry: ModelRegistry, day: date
) -> RegisteredModel:
    example = model_input(features.head(5), model.params.features)
    info = mlflow.sklearn.log_model(
        model.pipeline,
        name="model",
        signature=infer_signature(example, model.pipeline.predict(example)),
        input_example=example,
        pip_requirements=PIP_REQUIREMENTS,
        registered_model_name=MODEL_NAME,
        skops_trusted_types=skops.io.get_untrusted_types(data=skops.io.dumps(model.pipeline)),
    )
    version = str(info.registered_model_version)
    registry.tag_version(version, TRAINED_THROUGH_TAG, str(day))
    return registry.version(version)


def evaluate_and_promote(
    window_and_day: pl.DataFrame,
    day: date,
    challenger: RegisteredModel,
    registry: ModelRegistry,
    history: list[DayError],
) -> tuple[RegisteredModel, str | None, dict[str, float]]:
    """What `model_evaluation` and the promotion do for `day`: the serving model, the champion
    going into the day and seconds by phase (`evaluate`, `promote`)."""
    started = time.perf_counter()
    pickup_days = window_and_day["pickup_datetime"].dt.date()
    day_features = window_and_day.filter(pickup_days == day)
    incumbent = registry.champion_going_into(day)
    if incumbent is not None and incumbent.version == challenger.version:
        incumbent = None
    actual = day_features[TARGET].to_numpy()
    inputs = model_input(day_features, ALL_FEATURES)
    challenger_predicted = registry.load(challenger).predict(inputs)
    baseline_predicted = ZonePairBaseline(window_and_day.filter(pickup_days < day)).predict(
        day_features
    )
    incumbent_predicted = registry.load(incumbent).predict(inputs) if incumbent else None
    history.append(
        DayError(
            day=str(day),
            challenger=regression_metrics(actual, challenger_predicted)["rmse"],
            champion=regression_metrics(actual, incumbent_predicted)["rmse"]
            if incumbent_predicted is not None
            else None,
            baseline=regression_metrics(actual, baseline_predicted)["rmse"],
        )
    )
    with (
        mlflow.start_run(run_name=f"day {day} scoring"),
        mlflow.start_run(nested=True, run_name=f"evaluation {day}"),
    ):
        scored = {
            "challenger": mlflow_regression_metrics(actual, challenger_predicted, "challenger_"),
            "baseline": mlflow_regression_metrics(actual, baseline_predicted, "baseline_"),
            "champion": None
            if incumbent_predicted is None
            else mlflow_regression_metrics(actual, incumbent_predicted, "champion_"),
        }
        with tempfile.TemporaryDirectory(prefix="models_script_reports_") as folder:
            write_reports(
                Path(folder),
                day=str(day),
                challenger_version=challenger.version,
                actual=actual,
                predicted=challenger_predicted,
                pickup_hour=day_features["pickup_hour"].to_numpy(),
                borough=day_features["pu_borough"].to_list(),
                history=history[-29:],
            )
            mlflow.log_artifacts(folder, artifact_path="reports")
    evaluated = time.perf_counter()

    results = [
        gate(scored["challenger"], scored["champion"], against="champion"),
        gate(scored["challenger"], scored["baseline"], against="baseline"),
    ]
    if all(result.passed for result in results):
        reason = "; ".join(result.message for result in results)
        decision = Decision("promoted", str(day), "promotion gate (auto)", reason, {})
        registry.promote(challenger, day, decision)
    serving = incumbent or challenger
    seconds = {"evaluate": evaluated - started, "promote": time.perf_counter() - evaluated}
    return serving, incumbent.version if incumbent else None, seconds


def predict(
    day_features: pl.DataFrame, serving: RegisteredModel, registry: ModelRegistry, output: Path
) -> None:
    """What `trip_duration_predictions` does for a day."""
    predicted = registry.load(serving).predict(model_input(day_features, ALL_FEATURES))
    predictions = day_features.select(
        "trip_key", "pickup_datetime", "PULocationID", "DOLocationID", "trip_distance"
    ).with_columns(
        pl.Series("predicted_duration_min", predicted, dtype=pl.Float64),
        pl.lit(serving.version).alias("model_version"),
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    predictions.write_parquet(output)


def model_trained_through(registry: ModelRegistry, day: date) -> RegisteredModel:
    """The newest version trained through `day`: the challenger of the first day."""
    found = [
        RegisteredModel.from_version(version)
        for version in registry.client.search_model_versions(f"name='{MODEL_NAME}'")
        if version.tags.get(TRAINED_THROUGH_TAG) == str(day)
    ]
    if not found:
        raise SystemExit(
            f"no version of {MODEL_NAME} trained through {day}: run --train-only first"
        )
    return max(found, key=lambda model: int(model.version))


def main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    tracking_uri = f"sqlite:///{(args.mlflow_dir / 'mlflow.db').resolve()}"
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        mlflow.create_experiment(
            EXPERIMENT, artifact_location=str((args.mlflow_dir / "mlartifacts").resolve())
        )
    mlflow.set_experiment(EXPERIMENT)
    registry = ModelRegistry(tracking_uri, MODEL_NAME)
    window = timedelta(days=args.window_days)
    history: list[DayError] = []
    previous = (
        None if args.train_only else model_trained_through(registry, args.first - timedelta(days=1))
    )
    day = args.first
    while day <= args.last:
        day_started = time.perf_counter()
        seconds: dict[str, float] = {}
        window_and_day = read_features(args.data_dir, day - window, day)
        read = time.perf_counter()
        seconds["read"] = read - day_started
        training = window_and_day.filter(pl.col("pickup_datetime").dt.date() > day - window)
        model, trained = train_and_register(training, day, args.window_days, registry)
        seconds |= trained
        if not args.train_only:
            assert previous is not None
            serving, champion, scored = evaluate_and_promote(
                window_and_day, day, previous, registry, history
            )
            seconds |= scored
            predicted = time.perf_counter()
            day_features = window_and_day.filter(pl.col("pickup_datetime").dt.date() == day)
            predict(
                day_features, serving, registry, args.mlflow_dir / "predictions" / f"{day}.parquet"
            )
            seconds["predict"] = time.perf_counter() - predicted
        summary = {
            "day": str(day),
            "model_version": model.version,
            "train_rows": training.height,
            **(
                {}
                if args.train_only
                else {"champion_version": champion, "serving_version": serving.version}
            ),
            "day_seconds": seconds,
        }
        print(json.dumps(summary), flush=True)
        previous = model
        day += timedelta(days=1)
    print(f"work_seconds={time.perf_counter() - started:.4f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("mlflow_dir", type=Path)
    parser.add_argument("first", type=date.fromisoformat)
    parser.add_argument("last", type=date.fromisoformat)
    parser.add_argument("--window-days", type=int, default=28)
    parser.add_argument("--train-only", action="store_true")
    main(parser.parse_args())
