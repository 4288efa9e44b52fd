"""Daily batch predictions from the champion model."""

from datetime import date
from typing import TYPE_CHECKING, Any

import dagster as dg
import polars as pl

from ml_assets.assets.evaluation import serving_model
from ml_assets.assets.first_day import first_day_metadata, first_day_record, is_first_day
from ml_assets.assets.metadata import table_metadata
from ml_assets.assets.previous_decision import (
    PreviousDecisionConfig,
    runs_days_out_of_order,
    wait_for_decision_before,
)
from ml_assets.failures import failing_without_retries
from ml_assets.lib.model_params import ALL_FEATURES
from ml_assets.partitions import DailyPartitioning
from ml_assets.resources.mlflow import ModelRegistryResource
from ml_assets.retry_policies import mlflow_retry

if TYPE_CHECKING:
    import numpy as np


class PredictionsConfig(PreviousDecisionConfig):
    """How long the predictions of a day, in a backfill or a catch-up, wait for the promotion
    decision of the day before."""


def trip_duration_predictions(
    context: dg.AssetExecutionContext,
    config: PredictionsConfig,
    trip_features: pl.DataFrame,
    model_evaluation: dict[str, Any],
    model_registry: ModelRegistryResource,
) -> dg.MaterializeResult:
    """Predicted duration in minutes of every trip of the day, with its trip key.

    Scored by the champion going into the day: a model trained, and chosen, on days before it, so
    nothing about the day leaks into its predictions. The champion is read from the registry when
    the predictions are made, so a decision of the day before, a rollback or an alias moved in
    MLflow after the day's evaluation is used. On the first evaluated day, when no champion exists
    yet, the model trained through the day before (the one the evaluation scored) is used. The
    first day of the loop has no model before it: its predictions are an empty table whose
    metadata says so (`first_day`).

    In a backfill or a catch-up, where days are scored side by side and their promotions follow,
    it first waits (at most `previous_decision_wait_seconds`) for a pending promotion decision of
    the day before, as the promotion gate does, and fails naming it if it stays pending.
    """
    # Imported here: it imports scikit-learn and pandas, which only this step needs.
    from ml_assets.lib.model_input import model_input

    day = date.fromisoformat(context.partition_key)
    if is_first_day(model_evaluation):
        record = first_day_record(day, "no trip of the day is predicted")
        context.log.info(f"{day}: {record['note']}")
        empty = _prediction_table(trip_features.clear(), [], None)
        return dg.MaterializeResult(
            value=empty,
            metadata={**table_metadata(empty), **first_day_metadata(record), "model_version": None},
        )
    registry = model_registry.registry()
    if runs_days_out_of_order(context.run.tags):
        wait_for_decision_before(
            context, day, config.previous_decision_wait_seconds, registry.prepare_loading
        )
    evaluated = serving_model(model_evaluation)
    serving = registry.champion_going_into(day) or evaluated
    if serving.version != evaluated.version:
        context.log.info(
            f"partition {day}: the champion going into the day is v{serving.version} (the "
            f"evaluation named v{evaluated.version}; the registry changed since)"
        )
    # A run told to stop stops here instead of being retried (see `failing_without_retries`).
    with failing_without_retries(f"partition {context.partition_key}"):
        pipeline = registry.load(serving)
        predicted = pipeline.predict(model_input(trip_features, ALL_FEATURES))
    predictions = _prediction_table(trip_features, predicted, serving.version)
    context.log.info(
        f"scored {predictions.height} trips of {context.partition_key} with model v{serving.version}"
    )
    return dg.MaterializeResult(
        value=predictions,
        metadata={
            **table_metadata(predictions),
            "model_version": serving.version,
            "model_uri": serving.uri,
            "mean_predicted_min": float(predictions["predicted_duration_min"].mean() or 0.0),
        },
    )


def _prediction_table(
    trip_features: pl.DataFrame, predicted: "np.ndarray | list[float]", model_version: str | None
) -> pl.DataFrame:
    return trip_features.select(
        "trip_key", "pickup_datetime", "PULocationID", "DOLocationID", "trip_distance"
    ).with_columns(
        pl.Series("predicted_duration_min", predicted, dtype=pl.Float64),
        pl.lit(model_version, dtype=pl.String).alias("model_version"),
    )


def predictions_assets(days: DailyPartitioning) -> list[dg.AssetsDefinition]:
    """The daily predictions, partitioned by the days of `days`."""
    return [
        dg.asset(
            group_name="predictions",
            partitions_def=days.partitions,
            kinds={"scikit-learn", "polars", "parquet"},
            code_version="2",  # the champion going into the day, read when the predictions are made
            retry_policy=mlflow_retry,  # the champion is loaded from the MLflow registry
            tags={"stage": "serve"},
        )(trip_duration_predictions),
    ]
