"""`model_quality_regression_alert`: a message when a day's model RMSE is worse than the days
before it by more than a margin."""

from __future__ import annotations

import dagster as dg

from ml_assets.lib.notifications import model_regression_message
from ml_assets.lib.rmse_trend import is_regression, trailing_mean, trailing_window
from ml_assets.resources.notifier import Notifier
from ml_assets.sensors.run_events import EVENTS_PER_TICK, metadata_values

MODEL_EVALUATION = dg.AssetKey("model_evaluation")
DEFAULT_RMSE_REGRESSION_MARGIN = 0.1
DEFAULT_RMSE_TRAILING_DAYS = 7


def rmse_by_day(instance: dg.DagsterInstance, days: list[str]) -> dict[str, float]:
    """The latest evaluation RMSE of each of `days` that has one."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=MODEL_EVALUATION, asset_partitions=days),
        limit=len(days) * 20,
    ).records  # newest first: the first record seen for a day is its latest
    latest: dict[str, float] = {}
    for record in records:
        rmse = metadata_values(record.event_log_entry).get("rmse")
        if record.partition_key and rmse is not None:
            latest.setdefault(record.partition_key, float(rmse))
    return latest


def build_model_quality_regression_alert(
    margin: float = DEFAULT_RMSE_REGRESSION_MARGIN,
    trailing_days: int = DEFAULT_RMSE_TRAILING_DAYS,
) -> dg.SensorDefinition:
    """The `model_quality_regression_alert` sensor for a margin (0.1 = 10%) and a number of
    trailing days, as `ML_ASSETS_RMSE_REGRESSION_MARGIN` and `ML_ASSETS_RMSE_TRAILING_DAYS` set
    them."""

    @dg.sensor(
        name="model_quality_regression_alert",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Announces a `model_evaluation` whose RMSE is worse than the mean of the "
            f"{trailing_days} day(s) before it (`ML_ASSETS_RMSE_TRAILING_DAYS`) by more than "
            f"{margin:.0%} (`ML_ASSETS_RMSE_REGRESSION_MARGIN`). Days are compared by partition, "
            "whatever order they ran in."
        ),
    )
    def model_quality_regression_alert(
        context: dg.SensorEvaluationContext, notifier: Notifier
    ) -> dg.SkipReason:
        instance = context.instance
        if context.cursor is None:
            latest = instance.fetch_materializations(MODEL_EVALUATION, limit=1).records
            context.update_cursor(str(latest[0].storage_id if latest else 0))
            return dg.SkipReason("started: evaluations from now on are compared")
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=MODEL_EVALUATION, after_storage_id=int(context.cursor)),
            limit=EVENTS_PER_TICK,
            ascending=True,
        ).records
        regressions = 0
        for record in records:
            day = record.partition_key
            rmse = metadata_values(record.event_log_entry).get("rmse")
            if day and rmse is not None:
                window = trailing_window(day, trailing_days)
                trailing = trailing_mean(rmse_by_day(instance, window), day, trailing_days)
                if trailing and is_regression(float(rmse), trailing[0], margin):
                    notifier.send(
                        model_regression_message(
                            partition=day,
                            rmse=float(rmse),
                            trailing_mean_rmse=trailing[0],
                            trailing_days=trailing[1],
                            margin=margin,
                            run_id=record.run_id,
                            ui_url=notifier.ui_url,
                        ),
                        log=context.log,
                    )
                    regressions += 1
            context.update_cursor(str(record.storage_id))
        return dg.SkipReason(f"{regressions} regression(s) among {len(records)} new evaluation(s)")

    return model_quality_regression_alert
