"""Scoring the model trained through the day before on the day's trips, against the champion.

`model_evaluation` only scores and reports: the promotion decision is its own step downstream,
`model_promotion` (`ml_assets.assets.promotion`), gated by the blocking checks of
`ml_assets.checks.promotion_gate`.
"""

import tempfile
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from ml_assets.assets.first_day import first_day_metadata, first_day_record
from ml_assets.assets.metadata import rmse_comparison_markdown
from ml_assets.assets.training import MODEL_GROUP
from ml_assets.failures import failing_without_retries
from ml_assets.lib.errors import NotEnoughTripsError
from ml_assets.lib.evaluation_reports import DayError, reports_markdown, write_reports
from ml_assets.lib.features import TARGET
from ml_assets.lib.model_params import ALL_FEATURES
from ml_assets.lib.registry import RegisteredModel
from ml_assets.partitions import DailyPartitioning
from ml_assets.resources.mlflow import MlflowTracking, ModelRegistryResource
from ml_assets.retry_policies import mlflow_retry

MODEL_EVALUATION = dg.AssetKey("model_evaluation")
REPORT_HISTORY_DAYS = 28
"""How many earlier partition days the RMSE-by-day report covers."""


def model_evaluation(
    context: dg.AssetExecutionContext,
    duration_model: dict[str, dict[str, Any]],
    trip_features: pl.LazyFrame,
    model_registry: ModelRegistryResource,
    mlflow_tracking: dg.ResourceParam[MlflowTracking],
):
    """Out-of-time quality of the model trained through the day before, scored on this day.

    The challenger (the model of day D-1) and the champion going into day D are both scored on
    day D's trips, next to a naive baseline (mean duration of the zone pair in the challenger's
    training window), with MLflow's evaluation API (`mlflow.models.evaluate`) in an MLflow run of
    its own (`evaluation D`), which also keeps the reports: predicted vs actual, residuals by hour
    and by borough, and the RMSE of the three by partition day over the last weeks. The asset page
    shows the same figures (`evaluation_report`) next to the numbers.

    Nothing is promoted here: `model_promotion` decides, downstream, behind the blocking checks
    of the promotion gate. `champion_version` is the champion going into the day (the one that
    serves its predictions), chosen before the day was seen. The first day of the loop has no
    earlier model: its evaluation is a record saying so (`first_day`), and nothing is scored.
    """
    # A run told to stop stops here instead of being retried (see `failing_without_retries`).
    with failing_without_retries(f"partition {context.partition_key}"):
        yield from _score_and_report(
            context, duration_model, trip_features, model_registry, mlflow_tracking
        )


def _earlier_errors(instance: dg.DagsterInstance, day: date) -> list[DayError]:
    """The RMSEs of the evaluations of the weeks before `day`, one per partition day (its latest
    materialization), from the metadata Dagster recorded."""
    days = [(day - timedelta(days=n)).isoformat() for n in range(1, REPORT_HISTORY_DAYS + 1)]
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=MODEL_EVALUATION, asset_partitions=days),
        limit=len(days) * 4,
    ).records
    latest: dict[str, DayError] = {}
    # Newest first: the first record of a day is its latest evaluation.
    for record in records:
        materialization = record.asset_materialization
        if materialization is None or materialization.partition in latest:
            continue
        values = {key: value.value for key, value in materialization.metadata.items()}
        latest[str(materialization.partition)] = DayError(
            day=str(materialization.partition),
            challenger=values.get("rmse"),  # type: ignore[arg-type]
            champion=values.get("champion_rmse"),  # type: ignore[arg-type]
            baseline=values.get("baseline_rmse"),  # type: ignore[arg-type]
        )
    return list(latest.values())


def _score_and_report(
    context: dg.AssetExecutionContext,
    duration_model: dict[str, dict[str, Any]],
    trip_features: pl.LazyFrame,
    model_registry: ModelRegistryResource,
    mlflow_tracking: MlflowTracking,
) -> Iterator[dg.Output]:
    import mlflow

    from ml_assets.lib.model import ZonePairBaseline, regression_metrics
    from ml_assets.lib.model_input import model_input
    from ml_assets.lib.promotion_gate import mlflow_regression_metrics

    day = date.fromisoformat(context.partition_key)
    if not duration_model:  # the day before is not a partition: the first day of the loop
        record = first_day_record(day, "nothing is scored")
        context.log.info(f"{day}: {record['note']}")
        yield dg.Output(record, metadata={**first_day_metadata(record), "dagster/row_count": 0})
        return
    (challenger_record,) = duration_model.values()
    pickup_day = pl.col("pickup_datetime").dt.date()
    day_features = trip_features.filter(pickup_day == day).collect()
    if day_features.height == 0:
        raise NotEnoughTripsError(
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
    challenger_predicted = registry.load(challenger).predict(inputs)
    challenger_metrics = regression_metrics(actual, challenger_predicted)
    baseline_predicted = ZonePairBaseline(training_window.collect()).predict(day_features)
    baseline_metrics = regression_metrics(actual, baseline_predicted)
    incumbent_predicted = registry.load(incumbent).predict(inputs) if incumbent else None
    incumbent_metrics = (
        regression_metrics(actual, incumbent_predicted) if incumbent_predicted is not None else None
    )
    # Predictions for day D come from the champion chosen before D was seen.
    serving = incumbent or challenger

    # The scores the reports explain: in the metadata table and at the head of the reports.
    comparison = rmse_comparison_markdown(
        {
            f"challenger v{challenger.version}": challenger_metrics["rmse"],
            f"champion v{incumbent.version}" if incumbent else "champion": (
                incumbent_metrics["rmse"] if incumbent_metrics else None
            ),
            "zone-pair baseline": baseline_metrics["rmse"],
        }
    )
    history = [
        *_earlier_errors(context.instance, day),
        DayError(
            day=day.isoformat(),
            challenger=challenger_metrics["rmse"],
            champion=incumbent_metrics["rmse"] if incumbent_metrics else None,
            baseline=baseline_metrics["rmse"],
        ),
    ]
    # The MLflow run starts only now, so a step that failed before logs nothing. The evaluation
    # has a run of its own, nested in the Dagster run's MLflow run (which, in a loop run, holds
    # the training of the day's model).
    mlflow_tracking.start_run()
    try:
        with mlflow.start_run(nested=True, run_name=f"evaluation {day}") as run:
            mlflow.set_tags(
                {
                    "dagster_partition": day.isoformat(),
                    "dagster_asset": "model_evaluation",
                    "challenger_version": challenger.version,
                    "champion_version": incumbent.version if incumbent else "",
                }
            )
            scored = {
                "challenger": mlflow_regression_metrics(
                    actual, challenger_predicted, "challenger_"
                ),
                "baseline": mlflow_regression_metrics(actual, baseline_predicted, "baseline_"),
                "champion": None
                if incumbent_predicted is None
                else mlflow_regression_metrics(actual, incumbent_predicted, "champion_"),
            }
            with tempfile.TemporaryDirectory(prefix="ml_assets_reports_") as folder:
                reports = write_reports(
                    Path(folder),
                    day=day.isoformat(),
                    challenger_version=challenger.version,
                    actual=actual,
                    predicted=challenger_predicted,
                    pickup_hour=day_features["pickup_hour"].to_numpy(),
                    borough=day_features["pu_borough"].to_list(),
                    history=history,
                )
                mlflow.log_artifacts(folder, artifact_path="reports")
                report_md = reports_markdown(reports, numbers=comparison)
        mlflow.end_run()
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    run_url = model_registry.run_url(run.info.experiment_id, run.info.run_id)
    report_uri = f"{run.info.artifact_uri}/reports"
    # The same figures served over HTTP by the MLflow UI (`get-artifact`), linked from the page.
    served = {
        name: f"{model_registry.ui_url.rstrip('/')}/get-artifact?path=reports/{path.name}"
        f"&run_uuid={run.info.run_id}"
        for name, path in reports.items()
    }

    record = {
        "date": day.isoformat(),
        "rows": day_features.height,
        "challenger": {**challenger.as_dict(), **challenger_metrics},
        "incumbent": {**incumbent.as_dict(), **incumbent_metrics} if incumbent else None,
        "baseline": baseline_metrics,
        "mlflow_metrics": scored,
        "mlflow_run_id": run.info.run_id,
        "reports": {name: f"{report_uri}/{path.name}" for name, path in reports.items()},
        "serving_model": serving.as_dict(),
    }
    context.log.info(
        f"{day}: challenger v{challenger.version} RMSE {challenger_metrics['rmse']:.3f}, "
        + (
            f"champion v{incumbent.version} {incumbent_metrics['rmse']:.3f}, "
            if incumbent and incumbent_metrics
            else "no champion to compare with, "
        )
        + f"baseline {baseline_metrics['rmse']:.3f}; model_promotion decides"
    )
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
            "champion_version": incumbent.version if incumbent else None,
            "serving_version": serving.version,
            "mlflow_run": dg.MetadataValue.url(run_url),
            "reports_uri": report_uri,
            "rmse_comparison": dg.MetadataValue.md(comparison),
            "evaluation_report": dg.MetadataValue.md(report_md),
            # Links, not images: the asset page must not fetch from an MLflow UI that may not run.
            "evaluation_report_from_mlflow": dg.MetadataValue.md(
                "\n".join(
                    f"- [{name.replace('_', ' ')}]({url}) (MLflow UI)"
                    for name, url in served.items()
                )
            ),
        },
    )


def serving_model(record: dict[str, Any]) -> RegisteredModel:
    """The model that serves the predictions of an evaluated day, from its evaluation record."""
    return RegisteredModel(
        **{key: value for key, value in record["serving_model"].items() if key != "uri"}
    )


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
            code_version="2",  # scores only; promotion is its own step
            retry_policy=mlflow_retry,
            tags={"stage": "evaluate"},
        )(model_evaluation),
    ]
