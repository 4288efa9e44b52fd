"""The promotion gate: blocking checks of `challenger_validation` that `model_promotion` waits for.

`challenger_validation` asked MLflow's model validation (`mlflow.validate_evaluation_results`, on
the metrics `model_evaluation` computed with `mlflow.models.evaluate` on the day's trips) whether
the challenger beats the champion by the promotion margin and the zone-pair baseline; these
checks report the answers. ERROR and blocking: a challenger that fails either is not promoted (nor
made a candidate), the run of `promotion_job` fails, and the champion stays where it was; the
check's description says why, on the asset page and in the failed-check alert.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from ml_assets.assets.first_day import is_first_day
from ml_assets.checks.results import ERROR, check_spec, day_result, named
from ml_assets.partitions import DailyPartitioning

CHALLENGER_VALIDATION = "challenger_validation"


def _gate_result(validations: dict[str, dict[str, Any]], against: str) -> dg.AssetCheckResult:
    failures = {}
    details = {}
    for day, record in validations.items():
        if is_first_day(record):
            details[day] = {"passed": True, "message": record["note"]}
            continue
        answer = record[against]
        details[day] = answer
        if not answer["passed"]:
            failures[day] = answer["message"]
    result = day_result(failures, ERROR, gate=dg.MetadataValue.json(details))
    if failures:
        return result
    # A passed check says why too: the asset page then shows the numbers it passed on.
    return dg.AssetCheckResult(
        passed=True,
        severity=ERROR,
        description="; ".join(f"{day}: {answer['message']}" for day, answer in details.items()),
        metadata=result.metadata,
    )


def challenger_beats_champion(
    challenger_validation: dict[str, dict[str, Any]],
) -> dg.AssetCheckResult:
    """The challenger's RMSE on the day's trips is lower than the champion's on the same trips by
    at least the promotion margin (ML_ASSETS_PROMOTION_MARGIN, a share), as MLflow's model
    validation judges it. Passes when there is no champion yet.

    ERROR, blocking: a challenger that fails it is not promoted; the champion stays.
    """
    return _gate_result(challenger_validation, "champion")


def challenger_beats_baseline(
    challenger_validation: dict[str, dict[str, Any]],
) -> dg.AssetCheckResult:
    """The challenger's RMSE on the day's trips is lower than the zone-pair baseline's (mean
    duration per pickup and drop-off zone over its training window), as MLflow's model
    validation judges it.

    ERROR, blocking: a model that cannot beat a per-zone-pair mean is never promoted.
    """
    return _gate_result(challenger_validation, "baseline")


GATE_CHECKS = (challenger_beats_champion, challenger_beats_baseline)


def promotion_gate_checks(days: DailyPartitioning) -> list[dg.AssetChecksDefinition]:
    """The two blocking checks of the promotion gate, daily over `days`."""

    @dg.multi_asset_check(
        name="promotion_gate",
        specs=[
            check_spec(check, CHALLENGER_VALIDATION, blocking=True, partitions_def=days.partitions)
            for check in GATE_CHECKS
        ],
    )
    def promotion_gate(
        challenger_validation: dict[str, dict[str, Any]],
    ) -> Iterator[dg.AssetCheckResult]:
        """The challenger against the champion (by the promotion margin) and the baseline."""
        for check in GATE_CHECKS:
            yield named(check(challenger_validation), check, CHALLENGER_VALIDATION)

    return [promotion_gate]
