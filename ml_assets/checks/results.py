"""What every asset check of ml_assets shares: results naming failing days, specs, carry-over.

Dagster wiring only; the measurements are plain code in `ml_assets/lib/quality.py` and
`ml_assets/lib/schemas.py`.
"""

import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import dagster as dg
import polars as pl

from ml_assets.checks.carry_over import carried_results

if TYPE_CHECKING:
    import pandera.polars as pa

CheckFunction = Callable[..., dg.AssetCheckResult]

ERROR = dg.AssetCheckSeverity.ERROR
WARN = dg.AssetCheckSeverity.WARN


def day_result(
    failures: dict[str, str], severity: dg.AssetCheckSeverity, **metadata: Any
) -> dg.AssetCheckResult:
    """Pass if no day failed; otherwise name each failing day and why."""
    return dg.AssetCheckResult(
        passed=not failures,
        severity=severity,
        description="; ".join(f"{day}: {why}" for day, why in failures.items()) or None,
        metadata={"failing_days": sorted(failures), **metadata},
    )


def schema_failures(
    schema: "pa.DataFrameSchema", frames: dict[str, pl.DataFrame]
) -> dict[str, str]:
    """Each day that breaks `schema`, with every problem it has."""
    from ml_assets.lib.schemas import schema_problems_by_key

    return {
        day: "; ".join(str(problem) for problem in problems)
        for day, problems in schema_problems_by_key(schema, frames).items()
    }


def check_spec(
    check: CheckFunction,
    asset: str,
    blocking: bool,
    reads: tuple[str, ...] = (),
    partitions_def: dg.PartitionsDefinition | None = None,
) -> dg.AssetCheckSpec:
    """The spec of `check` on `asset`, described by the check's docstring.

    Daily (`partitions_def`) where the asset runs one day per run; of the asset (None) where
    runs cover ranges of days.
    """
    return dg.AssetCheckSpec(
        check.__name__,
        asset=asset,
        additional_deps=reads,
        description=inspect.cleandoc(check.__doc__ or ""),
        blocking=blocking,
        partitions_def=partitions_def,
    )


def named(
    result: dg.AssetCheckResult,
    check: CheckFunction,
    asset: str,
    days: Sequence[str] = (),
) -> dg.AssetCheckResult:
    """`result` as the named check's; with `days`, naming the days it covered."""
    covered = {"days": f"{days[0]}..{days[-1]}", "day_count": len(days)} if days else {}
    return dg.AssetCheckResult(
        asset_key=dg.AssetKey(asset),
        check_name=check.__name__,
        passed=result.passed,
        severity=result.severity,
        description=result.description,
        metadata={**covered, **result.metadata},
    )


def days_of_run(context: dg.AssetCheckExecutionContext, asset: str) -> list[str]:
    """The days the run materialized; for a check run on its own, the asset's latest day."""
    run = context.op_execution_context
    if run.has_partition_key or run.has_partition_key_range:
        return list(run.partition_keys)
    latest = context.instance.get_latest_materialization_event(dg.AssetKey(asset))
    if latest is None or latest.asset_materialization is None:
        raise dg.Failure(f"{asset} has no materialized day to check")
    return [str(latest.asset_materialization.partition)]


def carried(
    context: dg.AssetCheckExecutionContext,
    checks: Sequence[CheckFunction],
    asset: str,
    days: Sequence[str],
    inputs: str | None,
) -> list[dg.AssetCheckResult] | None:
    """The checks' latest results, if they saw exactly these days of data with this code."""
    keys = [dg.AssetCheckKey(dg.AssetKey(asset), check.__name__) for check in checks]
    results = carried_results(context.instance, keys, inputs)
    if results is not None:
        context.log.info(
            f"{len(days)} day(s) and the check code unchanged since the checks last ran: "
            "their results are carried over, nothing is read"
        )
    return results
