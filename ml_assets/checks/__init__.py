"""Asset checks: data quality of trips and features, model quality gates, drift.

One module per checked asset; what they share (results naming failing days, specs, carry-over of
unchanged results) is in `results` and `carry_over`.

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

The checks of `raw_trips`, `trip_features` and `duration_model`, which backfills materialize a
range of days per run, are checks of the asset: one evaluation per run, naming the days it covered
(`days`). The checks of the assets that run one day per run (evaluation, predictions) are daily,
so each day's result is its own in the UI. Dagster 1.13 records one evaluation for a range run, so a
daily check there would leave every day of the range "planned", shown as skipped.
The measurements are plain code in `ml_assets/lib/quality.py` and `ml_assets/lib/schemas.py`.
"""

import warnings

import dagster as dg

from ml_assets.checks.model import model_checks
from ml_assets.checks.predictions import predictions_checks
from ml_assets.checks.promotion_gate import promotion_gate_checks
from ml_assets.checks.raw_trips import raw_trips_checks
from ml_assets.checks.trip_features import trip_features_checks
from ml_assets.partitions import DailyPartitioning


def build_asset_checks(days: DailyPartitioning) -> list[dg.AssetChecksDefinition]:
    """Every asset check; the daily ones over the days of `days`.

    One step per asset runs all of its checks: under the multiprocess executor every step is a
    process of its own, so the checks are grouped to start as few as possible.
    """
    # Dagster marks partitioned check specs as a preview; the daily checks rely on them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [
            raw_trips_checks,
            trip_features_checks,
            *model_checks(days),
            *predictions_checks(days),
            *promotion_gate_checks(days),
        ]
