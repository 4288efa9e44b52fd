"""The promotion gate: blocking checks of `model_evaluation` that `model_promotion` waits for.

Both compare with MLflow's model validation (`mlflow.validate_evaluation_results`) the metrics
`model_evaluation` computed with `mlflow.models.evaluate` on the day's trips
(`ml_assets.lib.promotion_gate`). ERROR and blocking: a challenger that fails either is not
promoted (nor made a candidate) and the champion stays where it was; the check's description says
why, on the asset page and in the failed-check alert.

They run in `promotion_job` only: the daily and loop jobs leave them out, so a challenger that
loses does not stop the day's predictions (`GATE_CHECK_KEYS`).
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from ml_assets.checks.results import ERROR, check_spec, day_result, named
from ml_assets.lib.promotion_gate import gate
from ml_assets.partitions import DailyPartitioning
from ml_assets.resources.promotion import PromotionPolicy

MODEL_EVALUATION = "model_evaluation"


def _gate_result(
    model_evaluation: dict[str, dict[str, Any]], against: str, margin: float
) -> dg.AssetCheckResult:
    failures = {}
    details = {}
    for day, record in model_evaluation.items():
        scored = record.get("mlflow_metrics")
        if scored is None:
            failures[day] = (
                "this evaluation was made before the promotion gate existed (no MLflow metrics); "
                "materialize model_evaluation of the day again"
            )
            continue
        result = gate(scored["challenger"], scored[against], against=against, margin=margin)
        details[day] = {"message": result.message, **result.as_metadata()}
        if not result.passed:
            failures[day] = result.message
    result = day_result(
        failures,
        ERROR,
        margin=margin,
        gate=dg.MetadataValue.json(details),
    )
    if not failures:
        # A passed check says why too: the asset page then shows the numbers it passed on.
        return dg.AssetCheckResult(
            passed=True,
            severity=ERROR,
            description="; ".join(f"{day}: {d['message']}" for day, d in details.items()),
            metadata=result.metadata,
        )
    return result


def challenger_beats_champion(
    model_evaluation: dict[str, dict[str, Any]], margin: float
) -> dg.AssetCheckResult:
    """The challenger's RMSE on the day's trips is lower than the champion's on the same trips by
    at least the promotion margin (ML_ASSETS_PROMOTION_MARGIN, a share), as MLflow's model
    validation judges it. Passes when there is no champion yet.

    ERROR, blocking: a challenger that fails it is not promoted; the champion stays.
    """
    return _gate_result(model_evaluation, "champion", margin)


def challenger_beats_baseline(
    model_evaluation: dict[str, dict[str, Any]],
) -> dg.AssetCheckResult:
    """The challenger's RMSE on the day's trips is lower than the zone-pair baseline's (mean
    duration per pickup and drop-off zone over its training window), as MLflow's model
    validation judges it.

    ERROR, blocking: a model that cannot beat a per-zone-pair mean is never promoted.
    """
    return _gate_result(model_evaluation, "baseline", 0.0)


GATE_CHECKS = (challenger_beats_champion, challenger_beats_baseline)
GATE_CHECK_KEYS = [
    dg.AssetCheckKey(dg.AssetKey(MODEL_EVALUATION), check.__name__) for check in GATE_CHECKS
]
"""The gate's checks, which only `promotion_job` runs."""


def promotion_gate_checks(days: DailyPartitioning) -> list[dg.AssetChecksDefinition]:
    """The two blocking checks of the promotion gate, daily over `days`."""

    @dg.multi_asset_check(
        name="promotion_gate",
        specs=[
            check_spec(check, MODEL_EVALUATION, blocking=True, partitions_def=days.partitions)
            for check in GATE_CHECKS
        ],
    )
    def promotion_gate(
        model_evaluation: dict[str, dict[str, Any]], promotion_policy: PromotionPolicy
    ) -> Iterator[dg.AssetCheckResult]:
        """The challenger against the champion (by the promotion margin) and the baseline."""
        yield named(
            challenger_beats_champion(model_evaluation, promotion_policy.margin),
            challenger_beats_champion,
            MODEL_EVALUATION,
        )
        yield named(
            challenger_beats_baseline(model_evaluation),
            challenger_beats_baseline,
            MODEL_EVALUATION,
        )

    return [promotion_gate]
