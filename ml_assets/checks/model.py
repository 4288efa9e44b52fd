"""The checks of `duration_model` (beats the naive baseline) and `model_evaluation` (drift).

The model's check is a check of the asset, naming the days of its run: a backfill trains up to ten
days per run. The evaluation's is daily: evaluations run one day per run.
"""

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import dagster as dg
import polars as pl

from ml_assets.checks.results import ERROR, WARN, check_spec, day_result, days_of_run, named
from ml_assets.lib.quality import PSI_WARN, feature_drift
from ml_assets.partitions import DailyPartitioning, window_days
from ml_assets.resources.parquet_io_manager import PartitionedFileIOManager

DURATION_MODEL = "duration_model"
MODEL_EVALUATION = "model_evaluation"
TRIP_FEATURES = "trip_features"
DRIFT_COLUMNS = ["trip_distance", "pickup_hour"]


def duration_model_beats_baseline(
    duration_model: dict[str, dict[str, Any]],
) -> dg.AssetCheckResult:
    """The model's validation RMSE (on the last day of its window) is lower than the naive
    zone-pair baseline's on the same trips.

    ERROR, not blocking: a model that cannot beat a per-zone-pair mean is broken and someone must
    look. It does not block because what runs after it in the same run (today's evaluation and
    predictions) uses the models chosen before today, not this one; this model is scored against
    the champion tomorrow and promoted only if it wins there.
    """
    failures = {}
    margins = {}
    for day, record in duration_model.items():
        rmse = record["metrics"]["val_rmse"]
        baseline = record["metrics"]["baseline_val_rmse"]
        margins[day] = round(baseline - rmse, 4)
        if not rmse < baseline:
            failures[day] = f"validation RMSE {rmse:.3f} is not below the baseline's {baseline:.3f}"
    return day_result(failures, ERROR, rmse_below_baseline_by=min(margins.values(), default=0.0))


def feature_drift_vs_training_window(
    model_evaluation: dict[str, dict[str, Any]],
    trip_features: dict[str, pl.DataFrame],
    window_days: int,
) -> dg.AssetCheckResult:
    """Population stability index (PSI) of trip distance and pickup hour of the evaluated day
    against the training window of the model evaluated on it; WARN above 0.25.

    WARN, not blocking: drift is a reason to read the evaluation with care, not a data error. A
    storm or a holiday shifts the day legitimately (2021-02-01, a snowstorm, reaches PSI 0.35 on
    pickup hour); a persistent shift means the model needs retraining on recent data.
    """
    failures = {}
    psi_by_day = {}
    for key in model_evaluation:
        day = date.fromisoformat(key)
        first = day - timedelta(days=window_days)
        window_keys = [k for k in trip_features if first <= date.fromisoformat(k) < day]
        if not window_keys or key not in trip_features:
            continue
        window = pl.concat([trip_features[k] for k in window_keys])
        psi = feature_drift(trip_features[key], window)
        psi_by_day[key] = psi
        drifted = {feature: value for feature, value in psi.items() if value > PSI_WARN}
        if drifted:
            failures[key] = ", ".join(f"PSI {value:.2f} on {f}" for f, value in drifted.items())
    return day_result(
        failures,
        WARN,
        psi=dg.MetadataValue.json(psi_by_day),
        psi_warn_above=PSI_WARN,
    )


def model_checks(days: DailyPartitioning) -> list[dg.AssetChecksDefinition]:
    """The checks of the model and of its evaluation, over the days of `days`."""

    # A check of the asset, not daily: a backfill trains all its days in one run, and Dagster 1.13
    # records one evaluation for a range run (see `ml_assets.checks`).
    @dg.multi_asset_check(
        name="duration_model_checks",
        specs=[check_spec(duration_model_beats_baseline, DURATION_MODEL, blocking=False)],
    )
    def duration_model_checks(
        context: dg.AssetCheckExecutionContext,
        io_manager: dg.ResourceParam[PartitionedFileIOManager],
    ) -> Iterator[dg.AssetCheckResult]:
        """The models of the run's days against the naive baseline."""
        days = days_of_run(context, DURATION_MODEL)
        models = io_manager.load_records(dg.AssetKey(DURATION_MODEL), days)
        yield named(
            duration_model_beats_baseline(duration_model=models),
            duration_model_beats_baseline,
            DURATION_MODEL,
            days,
        )

    # The evaluation of day D reads the training window of the model of D-1 (and D itself).
    drift_window_days = window_days(days.window_and_day) - 1

    @dg.multi_asset_check(
        name="model_evaluation_checks",
        specs=[
            check_spec(
                feature_drift_vs_training_window,
                MODEL_EVALUATION,
                blocking=False,
                reads=(TRIP_FEATURES,),
                partitions_def=days.partitions,
            )
        ],
        ins={"trip_features": dg.AssetIn(TRIP_FEATURES)},
    )
    def model_evaluation_checks(
        model_evaluation: dict[str, dict[str, Any]],
        trip_features: dict[str, pl.DataFrame],
        io_manager: dg.ResourceParam[PartitionedFileIOManager],
    ) -> Iterator[dg.AssetCheckResult]:
        """Drift of the evaluated day against the evaluated model's training window."""
        # Dagster ignores partition mappings on asset check inputs, so the window of earlier days
        # is read from storage here (only the two compared columns).
        window: dict[str, pl.DataFrame] = {}
        for key in model_evaluation:
            day = date.fromisoformat(key)
            for offset in range(1, drift_window_days + 1):
                earlier = (day - timedelta(days=offset)).isoformat()
                path = io_manager.stored_path(dg.AssetKey(TRIP_FEATURES), earlier)
                if earlier not in window and path is not None:
                    window[earlier] = pl.read_parquet(path, columns=DRIFT_COLUMNS)
        today = {key: frame.select(DRIFT_COLUMNS) for key, frame in trip_features.items()}
        yield named(
            feature_drift_vs_training_window(
                model_evaluation=model_evaluation,
                trip_features={**window, **today},
                window_days=drift_window_days,
            ),
            feature_drift_vs_training_window,
            MODEL_EVALUATION,
        )

    return [duration_model_checks, model_evaluation_checks]
