"""Two daily assets that do nothing, and checks that do nothing: Dagster's own cost of a range run.

The `backfill` case runs these over the same 90 days as `raw_trips` and `trip_features`, with the
same partitions and single-run backfill policy, to show what a run costs that only records a
materialization per partition: the floor under a re-run whose every partition is unchanged.
`defs_with_checks` adds the check steps Dagster runs with `raw_trips` and `trip_features`, shaped
like theirs: a step of five checks and a step of one (`raw_trips_checks`, and `raw_trips`'
freshness check `on_time`) after the first, a step of two (`trip_features_checks`) after the
second; each check of the asset, each passing at once.
"""

from collections.abc import Iterator

import dagster as dg

from ml_assets.partitions import DailyPartitioning

# The days of the loop's own partitions (the bench runs the default start date).
daily_partitions = DailyPartitioning.starting("2021-01-01", training_window_days=28).partitions


@dg.asset(partitions_def=daily_partitions, backfill_policy=dg.BackfillPolicy.single_run())
def bookkeeping_raw(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Records a materialization for each day of the run and does nothing else."""
    return dg.MaterializeResult(metadata={"run/partitions": len(context.partition_keys)})


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[bookkeeping_raw],
)
def bookkeeping_features(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Records a materialization for each day of the run and does nothing else."""
    return dg.MaterializeResult(metadata={"run/partitions": len(context.partition_keys)})


CHECK_STEPS = {"bookkeeping_raw": (5, 1), "bookkeeping_features": (2,)}
"""Per asset, the number of checks in each of its check steps, as ml_assets runs them."""


def _no_op_checks(asset: dg.AssetsDefinition, step: int, count: int) -> dg.AssetChecksDefinition:
    names = [f"passes_{step}_{number}" for number in range(1, count + 1)]

    @dg.multi_asset_check(
        name=f"{asset.key.to_python_identifier()}_checks_{step}",
        specs=[dg.AssetCheckSpec(name, asset=asset, blocking=True) for name in names],
    )
    def checks() -> Iterator[dg.AssetCheckResult]:
        for name in names:
            yield dg.AssetCheckResult(asset_key=asset.key, check_name=name, passed=True)

    return checks


defs = dg.Definitions(assets=[bookkeeping_raw, bookkeeping_features])
defs_with_checks = dg.Definitions(
    assets=[bookkeeping_raw, bookkeeping_features],
    asset_checks=[
        _no_op_checks(asset, step, count)
        for asset in (bookkeeping_raw, bookkeeping_features)
        for step, count in enumerate(CHECK_STEPS[asset.key.to_user_string()], start=1)
    ],
)
