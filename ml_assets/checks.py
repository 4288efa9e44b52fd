"""Asset checks: data quality of trips and features, model quality gates, drift.

Severity and blocking are chosen per check:

- ERROR + blocking where bad data must not flow on: a failing check of `raw_trips` or
  `trip_features` skips everything downstream in the same run (no training, no predictions on
  broken data) and fails the run.
- ERROR, not blocking, where the asset itself is the thing that is wrong and nothing downstream in
  the same run depends on it (see each check's description).
- WARN where the data is usable but someone should look (null rates, moderate cleaning losses,
  drift). Blocking only ever acts on ERROR results.

Each check evaluates every partition of the run and reports the failing days in its metadata;
the checks of one asset run together in one step.

The checks of `raw_trips` and `trip_features`, which backfills materialize a range of days per
run, are checks of the asset: one evaluation per run, naming the days it covered (`days`). The
checks of the assets that run one day per run (model, evaluation, predictions) are daily, so each
day's result is its own in the UI. Dagster 1.13 records one evaluation for a range run, so a
daily check there would leave every day of the range "planned", shown as skipped.
The measurements are plain code in `ml_assets/lib/quality.py` and `ml_assets/lib/schemas.py`.
"""

import inspect
import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import dagster as dg
import polars as pl

from ml_assets.assets.features import trip_features as trip_features_asset
from ml_assets.assets.ingestion import raw_trips as raw_trips_asset
from ml_assets.assets.model import duration_model as duration_model_asset
from ml_assets.assets.model import model_evaluation as model_evaluation_asset
from ml_assets.assets.predictions import (
    trip_duration_predictions as trip_duration_predictions_asset,
)
from ml_assets.check_cache import carried_results, fresh, inputs_fingerprint
from ml_assets.lib.quality import (
    DROPPED_SHARE_ERROR,
    DROPPED_SHARE_WARN,
    IMPLAUSIBLE_SHARE_ERROR,
    MAX_REQUIRED_NULL_RATE,
    PLAUSIBLE_PREDICTION_MINUTES,
    PSI_WARN,
    REPEATED_SHARE_ERROR,
    dropped_share,
    feature_drift,
    implausible_predictions,
    null_rates,
    pickups_outside_day,
    repeated_trips,
)
from ml_assets.lib.trip_schema import REQUIRED_SOURCE_COLUMNS, TRIP_SCHEMA
from ml_assets.partitions import TRAINING_WINDOW_DAYS, daily_partitions
from ml_assets.resources.parquet_io_manager import PartitionedFileIOManager

if TYPE_CHECKING:
    import pandera.polars as pa

CheckFunction = Callable[..., dg.AssetCheckResult]

ERROR = dg.AssetCheckSeverity.ERROR
WARN = dg.AssetCheckSeverity.WARN


def _result(
    failures: dict[str, str], severity: dg.AssetCheckSeverity, **metadata: Any
) -> dg.AssetCheckResult:
    """Pass if no day failed; otherwise name each failing day and why."""
    return dg.AssetCheckResult(
        passed=not failures,
        severity=severity,
        description="; ".join(f"{day}: {why}" for day, why in failures.items()) or None,
        metadata={"failing_days": sorted(failures), **metadata},
    )


def _schema_failures(
    schema: "pa.DataFrameSchema", frames: dict[str, pl.DataFrame]
) -> dict[str, str]:
    """Each day that breaks `schema`, with every problem it has."""
    from ml_assets.lib.schemas import schema_problems_by_key

    return {
        day: "; ".join(str(problem) for problem in problems)
        for day, problems in schema_problems_by_key(schema, frames).items()
    }


# The schemas are imported where a check uses them: pandera imports pandas (~0.4 s), which only
# the check steps need, not every process that loads the code location.

# raw_trips -----------------------------------------------------------------------------------


def raw_trips_schema(raw_trips: dict[str, pl.DataFrame]) -> dg.AssetCheckResult:
    """Every normalized column present with its dtype, in order, and every trip keyed.

    Repeated keys are the repeated-trips check's concern (it tolerates a few).

    ERROR, blocking: features and the model read these columns by name and dtype; a table that
    breaks the schema would fail them obscurely or, worse, be misread.
    """
    from ml_assets.lib.schemas import TRIP_FRAME_SCHEMA

    failures = _schema_failures(TRIP_FRAME_SCHEMA, raw_trips)
    return _result(failures, ERROR, expected_columns=list(TRIP_SCHEMA))


def raw_trips_not_empty(raw_trips: dict[str, pl.DataFrame]) -> dg.AssetCheckResult:
    """At least one trip on the day.

    ERROR, blocking: NYC has thousands of trips every day; none means the source file or the
    download is broken, and a model trained or evaluated on an empty day means nothing.
    """
    rows = {day: frame.height for day, frame in raw_trips.items()}
    failures = {day: "no trips" for day, count in rows.items() if count == 0}
    return _result(failures, ERROR, rows=sum(rows.values()))


def raw_trips_pickups_on_day(raw_trips: dict[str, pl.DataFrame]) -> dg.AssetCheckResult:
    """Every trip's pickup falls on the partition's day.

    ERROR, blocking: TLC month files hold stray trips of other days (even other years); a day
    that lets them in would count trips twice and leak later days into training.
    """
    outside = {
        day: pickups_outside_day(frame, date.fromisoformat(day)) for day, frame in raw_trips.items()
    }
    failures = {
        day: f"{count} pickup(s) outside the day" for day, count in outside.items() if count
    }
    return _result(failures, ERROR, pickups_outside_day=sum(outside.values()))


def raw_trips_repeated_trips(raw_trips: dict[str, pl.DataFrame]) -> dg.AssetCheckResult:
    """No trip repeated in full: WARN for a few repeats, ERROR (blocking) when more than 1% of a
    day's trips repeat another; the failing days and their repeat counts are in the description.

    A trip's key is a digest of its whole source row (every column of the TLC file, those that
    normalization drops included), so two trips share a key only if the source holds the same row
    twice, and a day served twice over repeats every key. Tolerance: TLC's green months of 2021
    and later hold no row repeated in full; other years and fleets may hold a handful of double
    submissions, which warn (the day is usable: `trip_features` keeps one copy of each trip, so
    none trains twice). Above 1% of a day the source served trips twice: ERROR, and nothing
    downstream runs on the day. Trips that only share pickup and drop-off times, zones and
    distance with another (about 0.2% of green trips) differ in other columns; they are distinct
    trips with distinct keys and never count here.
    """
    counts = {day: repeated_trips(frame) for day, frame in raw_trips.items()}
    shares = {day: count / raw_trips[day].height if count else 0.0 for day, count in counts.items()}
    severity = ERROR if any(share > REPEATED_SHARE_ERROR for share in shares.values()) else WARN
    failures = {
        day: f"{count:,} of {raw_trips[day].height:,} trips ({shares[day]:.1%}) repeat another "
        "trip in full"
        for day, count in counts.items()
        if count
    }
    return _result(
        failures,
        severity,
        repeated_trips=sum(counts.values()),
        max_repeated_share=round(max(shares.values(), default=0.0), 4),
        error_above=REPEATED_SHARE_ERROR,
    )


def raw_trips_null_rates(raw_trips: dict[str, pl.DataFrame]) -> dg.AssetCheckResult:
    """Share of missing values of the required columns (pickup and drop-off time, zones,
    distance) at most 1%; the rates of every column are in the metadata.

    WARN, not blocking: cleaning drops trips with missing required values, so the day is still
    usable; a high rate points at a source problem worth a look. Optional columns (passenger
    count, rate code, payment type) are often half empty in TLC files and are only reported.
    """
    rates_by_day = {day: null_rates(frame, TRIP_SCHEMA) for day, frame in raw_trips.items()}
    failures = {}
    for day, rates in rates_by_day.items():
        high = {c: rates[c] for c in REQUIRED_SOURCE_COLUMNS if rates[c] > MAX_REQUIRED_NULL_RATE}
        if high:
            failures[day] = ", ".join(f"{column} {rate:.1%} null" for column, rate in high.items())
    worst = {
        column: max(rates[column] for rates in rates_by_day.values()) for column in TRIP_SCHEMA
    }
    return _result(
        failures,
        WARN,
        max_required_null_rate=MAX_REQUIRED_NULL_RATE,
        null_rates=dg.MetadataValue.json(worst),
    )


# trip_features -------------------------------------------------------------------------------


def trip_features_schema(trip_features: dict[str, pl.DataFrame]) -> dg.AssetCheckResult:
    """Feature columns and dtypes as declared, no nulls in any column, target `duration_min`
    within 1..60, zones within 1..265, distance within 0..100, hour 0..23, weekday 1..7.

    ERROR, blocking: the model is trained on and predicts from these columns; a null or an
    out-of-range target would silently train a worse model or break scoring.
    """
    from ml_assets.lib.schemas import FEATURE_FRAME_SCHEMA

    failures = _schema_failures(FEATURE_FRAME_SCHEMA, trip_features)
    return _result(failures, ERROR, rows=sum(frame.height for frame in trip_features.values()))


def trip_features_dropped_share(
    trip_features: dict[str, pl.DataFrame], raw_trips: dict[str, pl.DataFrame]
) -> dg.AssetCheckResult:
    """Share of the day's trips removed by cleaning: WARN above 15%, ERROR (blocking) above 50%.

    Cleaning normally drops 3-5% of trips (implausible durations, distances or zones). Somewhat
    more is worth a look but the day is still usable (WARN, nothing is blocked); losing most of
    the day means the raw data is not what cleaning expects, and training or predicting on the
    remainder would be misleading (ERROR, downstream assets are skipped).
    """
    shares = {
        day: round(dropped_share(raw_trips[day].height, trip_features[day].height), 4)
        for day in trip_features
    }
    severity = ERROR if any(share > DROPPED_SHARE_ERROR for share in shares.values()) else WARN
    failures = {
        day: f"cleaning dropped {share:.1%} of trips"
        for day, share in shares.items()
        if share > DROPPED_SHARE_WARN
    }
    return _result(
        failures,
        severity,
        dropped_share=max(shares.values(), default=0.0),
        warn_above=DROPPED_SHARE_WARN,
        error_above=DROPPED_SHARE_ERROR,
    )


# model -----------------------------------------------------------------------------------------


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
    return _result(failures, ERROR, rmse_below_baseline_by=min(margins.values(), default=0.0))


def feature_drift_vs_training_window(
    model_evaluation: dict[str, dict[str, Any]], trip_features: dict[str, pl.DataFrame]
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
        first = day - timedelta(days=TRAINING_WINDOW_DAYS)
        window_keys = [k for k in trip_features if first <= date.fromisoformat(k) < day]
        if not window_keys or key not in trip_features:
            continue
        window = pl.concat([trip_features[k] for k in window_keys])
        psi = feature_drift(trip_features[key], window)
        psi_by_day[key] = psi
        drifted = {feature: value for feature, value in psi.items() if value > PSI_WARN}
        if drifted:
            failures[key] = ", ".join(f"PSI {value:.2f} on {f}" for f, value in drifted.items())
    return _result(
        failures,
        WARN,
        psi=dg.MetadataValue.json(psi_by_day),
        psi_warn_above=PSI_WARN,
    )


# predictions -----------------------------------------------------------------------------------


def trip_duration_predictions_complete_and_plausible(
    trip_duration_predictions: dict[str, pl.DataFrame], trip_features: dict[str, pl.DataFrame]
) -> dg.AssetCheckResult:
    """Exactly one prediction per `trip_features` row (same trip keys, none missing), and values
    within 0..120 minutes: ERROR if rows are missing or extra, or more than 1% of values are
    implausible; WARN for a few implausible values.

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
        expected = set(trip_features[day]["trip_key"])
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
    return _result(
        failures,
        severity,
        rows=sum(frame.height for frame in trip_duration_predictions.values()),
        implausible_predictions=implausible_total,
    )


# Dagster marks partitioned check specs as a preview; say so once here instead of on every
# code-location load.
warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*")

# Dagster wiring: one step per asset runs all of its checks. Under the multiprocess executor
# every step is a process of its own, so the checks are grouped to start as few as possible.


def _spec(
    check: CheckFunction,
    asset: dg.AssetsDefinition,
    blocking: bool,
    reads: tuple[dg.AssetsDefinition, ...] = (),
) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        check.__name__,
        asset=asset,
        additional_deps=reads,
        description=inspect.cleandoc(check.__doc__ or ""),
        blocking=blocking,
        # Daily where the asset runs one day per run; of the asset where runs cover ranges.
        partitions_def=None if asset.backfill_policy else daily_partitions,
    )


def _named(
    result: dg.AssetCheckResult,
    check: CheckFunction,
    asset: dg.AssetsDefinition,
    days: Sequence[str] = (),
) -> dg.AssetCheckResult:
    """`result` as the named check's; with `days`, naming the days it covered."""
    covered = {"days": f"{days[0]}..{days[-1]}", "day_count": len(days)} if days else {}
    return dg.AssetCheckResult(
        asset_key=asset.key,
        check_name=check.__name__,
        passed=result.passed,
        severity=result.severity,
        description=result.description,
        metadata={**covered, **result.metadata},
    )


def _days_of_run(context: dg.AssetCheckExecutionContext, asset: dg.AssetsDefinition) -> list[str]:
    """The days the run materialized; for a check run on its own, the asset's latest day."""
    run = context.op_execution_context
    if run.has_partition_key or run.has_partition_key_range:
        return list(run.partition_keys)
    latest = context.instance.get_latest_materialization_event(asset.key)
    if latest is None or latest.asset_materialization is None:
        raise dg.Failure(f"{asset.key.to_user_string()} has no materialized day to check")
    return [str(latest.asset_materialization.partition)]


def _carried(
    context: dg.AssetCheckExecutionContext,
    checks: dict[CheckFunction, bool],
    asset: dg.AssetsDefinition,
    days: Sequence[str],
    inputs: str | None,
) -> list[dg.AssetCheckResult] | None:
    """The checks' latest results, if they saw exactly these days of data with this code."""
    keys = [dg.AssetCheckKey(asset.key, check.__name__) for check in checks]
    carried = carried_results(context.instance, keys, inputs)
    if carried is not None:
        context.log.info(
            f"{len(days)} day(s) and the check code unchanged since the checks last ran: "
            "their results are carried over, nothing is read"
        )
    return carried


RAW_TRIPS_CHECKS: dict[CheckFunction, bool] = {
    raw_trips_schema: True,
    raw_trips_not_empty: True,
    raw_trips_pickups_on_day: True,
    raw_trips_repeated_trips: True,
    raw_trips_null_rates: False,
}
"""Each check of `raw_trips`, and whether it is blocking."""


@dg.multi_asset_check(
    name="raw_trips_checks",
    specs=[_spec(check, raw_trips_asset, blocking) for check, blocking in RAW_TRIPS_CHECKS.items()],
)
def raw_trips_checks(
    context: dg.AssetCheckExecutionContext,
    io_manager: dg.ResourceParam[PartitionedFileIOManager],
) -> Iterator[dg.AssetCheckResult]:
    """Schema, emptiness, stray days, repeated trips and null rates of the run's days of raw trips."""
    days = _days_of_run(context, raw_trips_asset)
    inputs = inputs_fingerprint(io_manager, [raw_trips_asset.key], days)
    carried = _carried(context, RAW_TRIPS_CHECKS, raw_trips_asset, days, inputs)
    if carried is not None:
        yield from carried
        return
    # Read here, not as an input: an input of a check of the asset would be every day there is.
    raw_trips = io_manager.load_frames(raw_trips_asset.key, days)
    for check in RAW_TRIPS_CHECKS:
        yield fresh(_named(check(raw_trips=raw_trips), check, raw_trips_asset, days), inputs)


TRIP_FEATURES_CHECKS: dict[CheckFunction, bool] = {
    trip_features_schema: True,
    trip_features_dropped_share: True,
}


@dg.multi_asset_check(
    name="trip_features_checks",
    specs=[
        _spec(check, trip_features_asset, blocking, reads=(raw_trips_asset,))
        for check, blocking in TRIP_FEATURES_CHECKS.items()
    ],
)
def trip_features_checks(
    context: dg.AssetCheckExecutionContext,
    io_manager: dg.ResourceParam[PartitionedFileIOManager],
) -> Iterator[dg.AssetCheckResult]:
    """Schema and cleaning losses of the run's days of features."""
    days = _days_of_run(context, trip_features_asset)
    inputs = inputs_fingerprint(io_manager, [trip_features_asset.key, raw_trips_asset.key], days)
    carried = _carried(context, TRIP_FEATURES_CHECKS, trip_features_asset, days, inputs)
    if carried is not None:
        yield from carried
        return
    trip_features = io_manager.load_frames(trip_features_asset.key, days)
    raw_trips = io_manager.load_frames(raw_trips_asset.key, days)
    schema = trip_features_schema(trip_features=trip_features)
    yield fresh(_named(schema, trip_features_schema, trip_features_asset, days), inputs)
    dropped = trip_features_dropped_share(trip_features=trip_features, raw_trips=raw_trips)
    yield fresh(_named(dropped, trip_features_dropped_share, trip_features_asset, days), inputs)


@dg.multi_asset_check(
    name="duration_model_checks",
    specs=[_spec(duration_model_beats_baseline, duration_model_asset, blocking=False)],
)
def duration_model_checks(
    duration_model: dict[str, dict[str, Any]],
) -> Iterator[dg.AssetCheckResult]:
    """The model against the naive baseline."""
    yield _named(
        duration_model_beats_baseline(duration_model=duration_model),
        duration_model_beats_baseline,
        duration_model_asset,
    )


DRIFT_COLUMNS = ["trip_distance", "pickup_hour"]


@dg.asset_check(
    asset=model_evaluation_asset,
    name="feature_drift_vs_training_window",
    description=inspect.cleandoc(feature_drift_vs_training_window.__doc__ or ""),
    partitions_def=daily_partitions,
    additional_ins={"trip_features": dg.AssetIn()},
)
def model_evaluation_checks(
    model_evaluation: dict[str, dict[str, Any]],
    trip_features: dict[str, pl.DataFrame],
    io_manager: dg.ResourceParam[PartitionedFileIOManager],
) -> dg.AssetCheckResult:
    # Dagster ignores partition mappings on asset check inputs, so the window of earlier days is
    # read from storage here (only the two compared columns).
    window: dict[str, pl.DataFrame] = {}
    for key in model_evaluation:
        day = date.fromisoformat(key)
        for offset in range(1, TRAINING_WINDOW_DAYS + 1):
            earlier = (day - timedelta(days=offset)).isoformat()
            path = io_manager.stored_path(trip_features_asset.key, earlier)
            if earlier not in window and path is not None:
                window[earlier] = pl.read_parquet(path, columns=DRIFT_COLUMNS)
    return feature_drift_vs_training_window(
        model_evaluation=model_evaluation,
        trip_features={**window, **{k: v.select(DRIFT_COLUMNS) for k, v in trip_features.items()}},
    )


@dg.multi_asset_check(
    name="trip_duration_predictions_checks",
    specs=[
        _spec(
            trip_duration_predictions_complete_and_plausible,
            trip_duration_predictions_asset,
            blocking=False,
            reads=(trip_features_asset,),
        )
    ],
    ins={"trip_features": dg.AssetIn("trip_features")},
)
def trip_duration_predictions_checks(
    trip_duration_predictions: dict[str, pl.DataFrame], trip_features: dict[str, pl.DataFrame]
) -> Iterator[dg.AssetCheckResult]:
    """Completeness and plausibility of the day's predictions."""
    yield _named(
        trip_duration_predictions_complete_and_plausible(
            trip_duration_predictions=trip_duration_predictions, trip_features=trip_features
        ),
        trip_duration_predictions_complete_and_plausible,
        trip_duration_predictions_asset,
    )


asset_checks: list[dg.AssetChecksDefinition] = [
    raw_trips_checks,
    trip_features_checks,
    duration_model_checks,
    model_evaluation_checks,
    trip_duration_predictions_checks,
]
