"""The check of `trip_duration_predictions`: one plausible prediction per trip of the day.

A daily check: predictions run one day per run.
"""

from collections.abc import Iterator
from datetime import date

import dagster as dg
import polars as pl

from ml_assets.checks.results import ERROR, WARN, check_spec, day_result, named
from ml_assets.lib.quality import (
    IMPLAUSIBLE_SHARE_ERROR,
    PLAUSIBLE_PREDICTION_MINUTES,
    implausible_predictions,
)
from ml_assets.partitions import DailyPartitioning

PREDICTIONS = "trip_duration_predictions"
TRIP_FEATURES = "trip_features"


def trip_duration_predictions_complete_and_plausible(
    trip_duration_predictions: dict[str, pl.DataFrame],
    trip_features: dict[str, pl.DataFrame],
    first_day: date | None = None,
) -> dg.AssetCheckResult:
    """Exactly one prediction per `trip_features` row (same trip keys, none missing), and values
    within 0..120 minutes: ERROR if rows are missing or extra, or more than 1% of values are
    implausible; WARN for a few implausible values. On the first day of the loop, which no model
    predicts, none (no row at all).

    Not blocking (nothing runs after predictions). ERROR means consumers must not use the day's
    predictions; the failed-check alert says so even though the run itself succeeded. A handful
    of slightly negative predictions happens with short training windows and only warns.
    """
    failures = {}
    severity = WARN
    implausible_total = 0
    from ml_assets.lib.schemas import PREDICTION_FRAME_SCHEMA, schema_problems_by_key

    schema_failures = schema_problems_by_key(PREDICTION_FRAME_SCHEMA, trip_duration_predictions)
    for day, predictions in trip_duration_predictions.items():
        problems = [str(problem) for problem in schema_failures.get(day, [])]
        unpredictable = first_day is not None and day == first_day.isoformat()
        expected = set() if unpredictable else set(trip_features[day]["trip_key"])
        predicted = set(predictions["trip_key"])
        if missing := len(expected - predicted):
            problems.append(f"{missing} feature row(s) without a prediction")
        if extra := len(predicted - expected):
            problems.append(f"{extra} prediction(s) for trips not in trip_features")
        if problems:
            severity = ERROR
        implausible = implausible_predictions(predictions)
        implausible_total += implausible
        if implausible:
            low, high = PLAUSIBLE_PREDICTION_MINUTES
            share = implausible / max(predictions.height, 1)
            problems.append(f"{implausible} prediction(s) ({share:.1%}) outside {low}..{high} min")
            if share > IMPLAUSIBLE_SHARE_ERROR:
                severity = ERROR
        if problems:
            failures[day] = "; ".join(problems)
    return day_result(
        failures,
        severity,
        rows=sum(frame.height for frame in trip_duration_predictions.values()),
        implausible_predictions=implausible_total,
    )


def predictions_checks(days: DailyPartitioning) -> list[dg.AssetChecksDefinition]:
    """The daily check of the predictions, over the days of `days`."""

    @dg.multi_asset_check(
        name="trip_duration_predictions_checks",
        specs=[
            check_spec(
                trip_duration_predictions_complete_and_plausible,
                PREDICTIONS,
                blocking=False,
                reads=(TRIP_FEATURES,),
                partitions_def=days.partitions,
            )
        ],
        ins={"trip_features": dg.AssetIn(TRIP_FEATURES)},
    )
    def trip_duration_predictions_checks(
        trip_duration_predictions: dict[str, pl.DataFrame],
        trip_features: dict[str, pl.DataFrame],
    ) -> Iterator[dg.AssetCheckResult]:
        """Completeness and plausibility of the day's predictions."""
        yield named(
            trip_duration_predictions_complete_and_plausible(
                trip_duration_predictions=trip_duration_predictions,
                trip_features=trip_features,
                first_day=days.first_day,
            ),
            trip_duration_predictions_complete_and_plausible,
            PREDICTIONS,
        )

    return [trip_duration_predictions_checks]
