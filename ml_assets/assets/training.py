"""Training and registering the day's trip-duration model.

MLflow and `ml_assets.lib.model` (scikit-learn, pandas) are imported in the step that uses them:
together they take about two seconds to import, and every Dagster process imports this module when
it loads the code location.
"""

from datetime import date, timedelta
from typing import TYPE_CHECKING

import dagster as dg
import polars as pl

from ml_assets.assets.metadata import importance_markdown
from ml_assets.config import TrainingConfig
from ml_assets.failures import failing_without_retries
from ml_assets.lib.features import TARGET
from ml_assets.lib.registry import RegisteredModel
from ml_assets.lib.registry_labels import TRAINED_THROUGH_TAG
from ml_assets.partitions import DailyPartitioning, window_days
from ml_assets.resources.mlflow import MlflowTracking, ModelRegistryResource
from ml_assets.retry_policies import mlflow_retry

if TYPE_CHECKING:
    from ml_assets.lib.model import TrainedModel

MODEL_GROUP = "model"
TRIP_FEATURES = dg.AssetKey("trip_features")
MLFLOW_MODEL_NAME = "model"


def _pip_requirements() -> list[str]:
    """Pinned explicitly: MLflow would otherwise spend seconds inferring them on every log."""
    import mlflow
    import numpy
    import pandas
    import sklearn

    return [
        f"scikit-learn=={sklearn.__version__}",
        f"pandas=={pandas.__version__}",
        f"numpy=={numpy.__version__}",
        f"mlflow=={mlflow.__version__}",
    ]


def _validation_split(features: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Hold out the window's last day (or last tenth of trips) to validate out of time."""
    days = features["pickup_datetime"].dt.date()
    last_day = days.max()
    if days.n_unique() > 1:
        return features.filter(days < last_day), features.filter(days == last_day)
    cut = int(features.height * 0.9)
    return features[:cut], features[cut:]


def duration_model(
    context: dg.AssetExecutionContext,
    trip_features: pl.LazyFrame,
    mlflow_tracking: dg.ResourceParam[MlflowTracking],
    model_registry: ModelRegistryResource,
    config: TrainingConfig,
) -> dg.MaterializeResult:
    """A trip-duration model trained on the trailing window of days ending on the partition's day.

    Logged to MLflow through dagster-mlflow (params, validation metrics, the model with its
    signature, input example and pinned requirements) and registered as a new version of the
    registered model. The last day of the window is held out to validate against the zone-pair
    baseline; the registered model is then refit on the whole window.

    The model family, its hyperparameters, the feature groups and the window length come from the
    run config (Launchpad or `retrain_job`); the defaults are the model the daily loop trains.
    """
    import mlflow

    from ml_assets.lib.model import (
        ZonePairBaseline,
        feature_importances,
        regression_metrics,
        train_model,
    )

    day = context.partition_key
    params = config.model_params()
    # The partition mapping loads the longest window; the run config may ask for fewer days.
    loaded_days = window_days(context.assets_def.get_partition_mapping(TRIP_FEATURES))
    if config.window_days is not None and config.window_days > loaded_days:
        raise dg.Failure(
            description=(
                f"invalid TrainingConfig: window_days: {config.window_days} is longer than the "
                f"{loaded_days} days the daily loop loads (ML_ASSETS_TRAINING_WINDOW_DAYS)"
            ),
            allow_retries=False,
        )
    training_days = config.window_days or loaded_days
    first_day = date.fromisoformat(day) - timedelta(days=training_days - 1)
    features = trip_features.filter(pl.col("pickup_datetime").dt.date() >= first_day).collect()
    if features.height == 0:
        raise ValueError(
            f"partition {day}: the {training_days}-day training window holds no trip_features rows"
        )
    window = features["pickup_datetime"].dt.date()
    window_start, window_end = str(window.min()), str(window.max())

    train, validation = _validation_split(features)
    holdout_model = train_model(train, params)
    validation_metrics = regression_metrics(
        validation[TARGET].to_numpy(), holdout_model.predict(validation)
    )
    baseline_metrics = regression_metrics(
        validation[TARGET].to_numpy(), ZonePairBaseline(train).predict(validation)
    )
    model = train_model(features, params)

    # An artifact store the step cannot write to (a file in the way, no permission) fails the
    # same way on every retry: fail at once, naming the partition.
    with failing_without_retries(f"partition {day}"):
        try:
            # The MLflow run starts only now, so a step that failed before (bad config, no trips)
            # leaves none behind; a retried step resumes the run its previous attempt ended.
            run = mlflow_tracking.start_run()
            mlflow_tracking.log_params(
                {
                    **params.as_mlflow_params(),
                    "window_days": str(training_days),
                    "window_start": window_start,
                    "window_end": window_end,
                }
            )
            metrics = {
                "val_rmse": validation_metrics["rmse"],
                "val_mae": validation_metrics["mae"],
                "baseline_val_rmse": baseline_metrics["rmse"],
                "baseline_val_mae": baseline_metrics["mae"],
                "train_rows": float(features.height),
                "fit_seconds": model.fit_seconds,
            }
            mlflow.log_metrics(metrics)
            mlflow.set_tags({"dagster_partition": day, "dagster_asset": "duration_model"})
            registered = _log_and_register(model, features, model_registry, day)
            mlflow.end_run()
        except BaseException:
            # The run keeps what it logged, marked failed.
            mlflow.end_run(status="FAILED")
            raise

    experiment_id = run.info.experiment_id
    importances = feature_importances(model)
    context.log.info(
        f"model v{registered.version} trained on {features.height} trips "
        f"({window_start}..{window_end}) in {model.fit_seconds:.2f}s: "
        f"validation RMSE {validation_metrics['rmse']:.3f} vs baseline {baseline_metrics['rmse']:.3f}"
    )
    return dg.MaterializeResult(
        value={
            **registered.as_dict(),
            "window_start": window_start,
            "window_end": window_end,
            "metrics": metrics,
            "params": params.as_mlflow_params(),
            "window_days": training_days,
        },
        metadata={
            "dagster/row_count": features.height,
            "mlflow_run_id": registered.run_id,
            "mlflow_run": dg.MetadataValue.url(
                model_registry.run_url(experiment_id, run.info.run_id)
            ),
            "model_version": registered.version,
            "model_uri": registered.uri,
            "model_version_link": dg.MetadataValue.url(
                model_registry.model_version_url(registered.version)
            ),
            "window": f"{window_start}..{window_end}",
            "val_rmse": validation_metrics["rmse"],
            "val_mae": validation_metrics["mae"],
            "baseline_val_rmse": baseline_metrics["rmse"],
            "fit_seconds": model.fit_seconds,
            "model_family": params.family,
            "feature_groups": ", ".join(params.feature_groups),
            "window_days": training_days,
            "params": dg.MetadataValue.json(params.as_mlflow_params()),
            "feature_importance": dg.MetadataValue.json(importances),
            "feature_importance_chart": dg.MetadataValue.md(importance_markdown(importances)),
        },
    )


def _trusted_types(pipeline: object) -> list[str]:
    """The types skops must trust to load `pipeline` back: exactly those it is made of."""
    # Imported here: importing skops takes seconds, and most steps never log a model.
    import skops.io

    return skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))


def _log_and_register(
    model: "TrainedModel",
    features: pl.DataFrame,
    model_registry: ModelRegistryResource,
    day: str,
) -> RegisteredModel:
    import mlflow
    from mlflow.models import infer_signature

    from ml_assets.lib.model_input import model_input

    example = model_input(features.head(5), model.params.features)
    signature = infer_signature(example, model.pipeline.predict(example))
    info = mlflow.sklearn.log_model(
        model.pipeline,
        name=MLFLOW_MODEL_NAME,
        signature=signature,
        input_example=example,
        pip_requirements=_pip_requirements(),
        registered_model_name=model_registry.model_name,
        # MLflow stores sklearn models with skops, which loads only types it is told to trust:
        # trust exactly the types of the pipeline trained here.
        skops_trusted_types=_trusted_types(model.pipeline),
    )
    version = str(info.registered_model_version)
    registry = model_registry.registry()
    registry.tag_version(version, TRAINED_THROUGH_TAG, day)
    return registry.version(version)


def training_assets(days: DailyPartitioning) -> list[dg.AssetsDefinition]:
    """The daily model, trained on the window of `days` ending on each day."""
    return [
        dg.asset(
            group_name=MODEL_GROUP,
            partitions_def=days.partitions,
            ins={"trip_features": dg.AssetIn(partition_mapping=days.training_window)},
            kinds={"scikit-learn", "mlflow"},
            code_version="2",  # 2: the default model also reads the pickup time (pickup_days)
            retry_policy=mlflow_retry,
            # One training at a time on a small machine, however many days a backfill asks for
            # (deploy/dagster.yaml: pools without their own limit run one step at a time).
            pool="training",
            tags={"stage": "train"},
        )(duration_model),
    ]
