"""Scoring the model trained through the day before on the day's trips, against the champion.

The promotion decision (`promotion`) is its own unit: the challenger becomes champion only if it
beats the champion going into the day on the same trips.
"""

from collections.abc import Iterator
from datetime import date
from typing import Any

import dagster as dg
import polars as pl

from ml_assets.assets.metadata import rmse_comparison_markdown
from ml_assets.assets.training import MODEL_GROUP
from ml_assets.failures import failing_without_retries
from ml_assets.lib.features import TARGET
from ml_assets.lib.model_params import ALL_FEATURES
from ml_assets.lib.registry import ModelRegistry, RegisteredModel
from ml_assets.partitions import DailyPartitioning
from ml_assets.resources.mlflow import ModelRegistryResource
from ml_assets.retry_policies import mlflow_retry


def model_evaluation(
    context: dg.AssetExecutionContext,
    duration_model: dict[str, dict[str, Any]],
    trip_features: pl.LazyFrame,
    model_registry: ModelRegistryResource,
):
    """Out-of-time quality of the model trained through the day before, scored on this day.

    The challenger (the model of day D-1) and the champion going into day D are both scored on
    day D's trips, next to a naive baseline (mean duration of the zone pair in the challenger's
    training window). The challenger is promoted, and the MLflow alias `champion` moved to it, only
    if it beats the champion on the same trips. The first day has no earlier model: nothing is
    materialized for it.

    The asset's Plots tab charts `rmse` against `baseline_rmse` (and `champion_rmse`) day by day.
    """
    # A run told to stop stops here instead of being retried (see `failing_without_retries`).
    with failing_without_retries(f"partition {context.partition_key}"):
        yield from _score_and_decide(context, duration_model, trip_features, model_registry)


def _score_and_decide(
    context: dg.AssetExecutionContext,
    duration_model: dict[str, dict[str, Any]],
    trip_features: pl.LazyFrame,
    model_registry: ModelRegistryResource,
) -> Iterator[dg.Output]:
    from ml_assets.lib.model import ZonePairBaseline, model_input, regression_metrics

    day = date.fromisoformat(context.partition_key)
    if not duration_model:
        context.log.info(f"{day}: no model was trained before this day; nothing to evaluate")
        return
    (challenger_record,) = duration_model.values()
    pickup_day = pl.col("pickup_datetime").dt.date()
    day_features = trip_features.filter(pickup_day == day).collect()
    if day_features.height == 0:
        raise ValueError(
            f"partition {day}: trip_features holds no trips of this day, so there is nothing to "
            "score the models on; check raw_trips for the day"
        )
    training_window = trip_features.filter(pickup_day < day)
    registry = model_registry.registry()
    challenger = registry.version(challenger_record["version"])
    incumbent = registry.champion_going_into(day)
    if incumbent is not None and incumbent.version == challenger.version:
        incumbent = None  # the challenger itself won an earlier day: nothing else to beat

    actual = day_features[TARGET].to_numpy()
    inputs = model_input(day_features, ALL_FEATURES)
    challenger_metrics = regression_metrics(actual, registry.load(challenger).predict(inputs))
    baseline = ZonePairBaseline(training_window.collect())
    baseline_metrics = regression_metrics(actual, baseline.predict(day_features))
    incumbent_metrics = (
        regression_metrics(actual, registry.load(incumbent).predict(inputs)) if incumbent else None
    )
    promote, champion = promotion(
        registry, day, challenger, challenger_metrics, incumbent, incumbent_metrics, context.log
    )
    # Predictions for day D come from the champion chosen before D was seen.
    serving = incumbent or challenger

    record = {
        "date": day.isoformat(),
        "rows": day_features.height,
        "challenger": {**challenger.as_dict(), **challenger_metrics},
        "incumbent": {**incumbent.as_dict(), **incumbent_metrics} if incumbent else None,
        "baseline": baseline_metrics,
        "promoted": promote,
        "champion": champion.as_dict() if champion else None,
        "serving_model": serving.as_dict(),
    }
    yield dg.Output(
        record,
        metadata={
            "dagster/row_count": day_features.height,
            "rmse": challenger_metrics["rmse"],
            "mae": challenger_metrics["mae"],
            "baseline_rmse": baseline_metrics["rmse"],
            "baseline_mae": baseline_metrics["mae"],
            "champion_rmse": incumbent_metrics["rmse"] if incumbent_metrics else None,
            "challenger_version": challenger.version,
            "champion_version": champion.version if champion else None,
            "promoted": promote,
            "rmse_comparison": dg.MetadataValue.md(
                rmse_comparison_markdown(
                    {
                        f"challenger v{challenger.version}": challenger_metrics["rmse"],
                        f"champion v{incumbent.version}" if incumbent else "champion": (
                            incumbent_metrics["rmse"] if incumbent_metrics else None
                        ),
                        "zone-pair baseline": baseline_metrics["rmse"],
                    }
                )
            ),
        },
    )


def promotion(
    registry: ModelRegistry,
    day: date,
    challenger: RegisteredModel,
    challenger_metrics: dict[str, float],
    incumbent: RegisteredModel | None,
    incumbent_metrics: dict[str, float] | None,
    log: dg.DagsterLogManager,
) -> tuple[bool, RegisteredModel | None]:
    """Move the champion alias to the challenger if it beat the champion going into `day` on the
    same trips (or there is none), else record that it was withdrawn. Returns whether it was
    promoted, and the champion after the decision."""
    promote = incumbent_metrics is None or challenger_metrics["rmse"] < incumbent_metrics["rmse"]
    if promote:
        log.info(f"{day}: promoting v{challenger.version} to champion")
        return True, registry.promote(challenger, day)
    registry.withdraw(challenger, day)
    return False, registry.current_champion() or incumbent


def evaluation_assets(days: DailyPartitioning) -> list[dg.AssetsDefinition]:
    """The daily evaluation of the model trained through the day before each day of `days`."""
    return [
        dg.asset(
            group_name=MODEL_GROUP,
            partitions_def=days.partitions,
            ins={
                "duration_model": dg.AssetIn(partition_mapping=days.previous_day),
                "trip_features": dg.AssetIn(partition_mapping=days.window_and_day),
            },
            kinds={"scikit-learn", "mlflow"},
            code_version="1",
            retry_policy=mlflow_retry,
            output_required=False,
            tags={"stage": "evaluate"},
        )(model_evaluation),
    ]
