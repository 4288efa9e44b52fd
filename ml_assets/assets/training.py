"""Training and registering the day's trip-duration model.

MLflow and `ml_assets.lib.model` (scikit-learn, pandas) are imported in the step that uses them:
together they take about two seconds to import, and every Dagster process imports this module when
it loads the code location.
"""

from datetime import date
from typing import TYPE_CHECKING, Any

import dagster as dg
import polars as pl

from ml_assets.assets.metadata import importance_markdown
from ml_assets.assets.model_mlflow import DayRuns, log_day
from ml_assets.config import TrainingConfig
from ml_assets.failures import failing_without_retries
from ml_assets.lib.registry import RegisteredModel
from ml_assets.partitions import DailyPartitioning, window_days
from ml_assets.resources.mlflow import MlflowTracking, ModelRegistryResource
from ml_assets.retry_policies import mlflow_retry

if TYPE_CHECKING:
    from mlflow import ActiveRun

    from ml_assets.lib.day_model import DayModel

MODEL_GROUP = "model"
TRIP_FEATURES = dg.AssetKey("trip_features")
DAYS_IN_MEMORY = 10
"""A range run trains this many days from one read of their features (the first day's window to
the last day): memory stays that of ten days and a window, however many days the run covers."""


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

    A backfill trains all its days in one run (a single-run backfill policy), in date order: each
    day is its own model, registered version and MLflow run (nested in the run of the Dagster run),
    and its materialization carries its own metadata. Its days are fitted several at a time, in
    worker processes (one per CPU core unless `parallel_fits` says otherwise), with the same
    models as one after the other. Every day's model then lands at once, so
    the backfill daemon requests each later day's scoring, promotion decision and predictions
    together, as one run per day.
    """
    # Imported here: scikit-learn and pandas, which only the training step needs.
    from ml_assets.lib.day_model import training_rows, training_window, windows_read_together
    from ml_assets.lib.parallel_fits import fit_day_models, fitting_processes

    training_days = _training_days(context, config)
    params = config.model_params()
    days = [date.fromisoformat(key) for key in context.partition_keys]
    records: dict[str, dict[str, Any]] = {}
    read = windows_read_together(training_rows(trip_features), days, training_days, DAYS_IN_MEMORY)
    # A window without trips fails at once, naming its day (training_window says which).
    windows = ((when, training_window(features, when, training_days)) for when, features in read)
    processes = fitting_processes(len(days), config.parallel_fits)
    if processes > 1:
        context.log.info(f"fitting {len(days)} days' models {processes} at a time")
    with failing_without_retries(), DayRuns(mlflow_tracking, len(days)) as day_runs:
        for when, window, fitting in fit_day_models(windows, params, processes):
            day = when.isoformat()
            # An artifact store the step cannot write to (a file in the way, no permission)
            # fails the same way on every retry, which in a range run would also train the days
            # before it again: fail at once, naming the partition.
            with failing_without_retries(f"partition {day}"):
                fitted = fitting.result()
                with day_runs.of_day(day) as run:
                    registered = log_day(
                        mlflow_tracking, model_registry, day, window, fitted, training_days
                    )
            records[day] = _record(registered, fitted, training_days)
            context.add_asset_metadata(
                _day_metadata(model_registry, run, registered, fitted, training_days),
                partition_key=day,
            )
            context.log.info(
                f"{day}: model v{registered.version} trained on {window.height} trips "
                f"({fitted.window_start}..{fitted.window_end}) in {fitted.model.fit_seconds:.2f}s: "
                f"validation RMSE {fitted.validation['rmse']:.3f} vs baseline "
                f"{fitted.baseline['rmse']:.3f}"
            )
    return dg.MaterializeResult(value=records if len(days) > 1 else records[days[0].isoformat()])


def _training_days(context: dg.AssetExecutionContext, config: TrainingConfig) -> int:
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
    return config.window_days or loaded_days


def _record(registered: RegisteredModel, fitted: "DayModel", training_days: int) -> dict[str, Any]:
    """What `duration_model` stores for a day: the version, its window, metrics and params."""
    return {
        **registered.as_dict(),
        "window_start": fitted.window_start,
        "window_end": fitted.window_end,
        "metrics": fitted.metrics,
        "params": fitted.model.params.as_mlflow_params(),
        "window_days": training_days,
    }


def _day_metadata(
    model_registry: ModelRegistryResource,
    run: "ActiveRun",
    registered: RegisteredModel,
    fitted: "DayModel",
    training_days: int,
) -> dict[str, Any]:
    """A day's materialization metadata: links to its MLflow run and version, its metrics."""
    from ml_assets.lib.model import feature_importances

    params = fitted.model.params
    importances = feature_importances(fitted.model)
    return {
        "dagster/row_count": fitted.model.train_rows,
        "mlflow_run_id": registered.run_id,
        "mlflow_run": dg.MetadataValue.url(
            model_registry.run_url(run.info.experiment_id, run.info.run_id)
        ),
        "model_version": registered.version,
        "model_uri": registered.uri,
        "model_version_link": dg.MetadataValue.url(
            model_registry.model_version_url(registered.version)
        ),
        "window": f"{fitted.window_start}..{fitted.window_end}",
        "val_rmse": fitted.validation["rmse"],
        "val_mae": fitted.validation["mae"],
        "baseline_val_rmse": fitted.baseline["rmse"],
        "fit_seconds": fitted.model.fit_seconds,
        "model_family": params.family,
        "feature_groups": ", ".join(params.feature_groups),
        "window_days": training_days,
        "params": dg.MetadataValue.json(params.as_mlflow_params()),
        "feature_importance": dg.MetadataValue.json(importances),
        "feature_importance_chart": dg.MetadataValue.md(importance_markdown(importances)),
    }


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
            # One run for a backfill's days (see `duration_model`), not several: while some days'
            # models were still training, Dagster's backfill daemon would request the other
            # days' scoring, gate and predictions in separate runs, which then wait on each other.
            backfill_policy=dg.BackfillPolicy.single_run(),
            # One training at a time on a small machine, however many days a backfill asks for
            # (deploy/dagster.yaml: pools without their own limit run one step at a time).
            pool="training",
            tags={"stage": "train"},
        )(duration_model),
    ]
