"""The promotion gate: MLflow's own evaluation and model validation, applied to one day's trips.

The challenger, the champion and the zone-pair baseline are each scored with
`mlflow.models.evaluate` (the default `regressor` evaluator, on predictions already made on the
same trips, so every model is scored on exactly the same rows); the gate then asks
`mlflow.validate_evaluation_results` whether the challenger's RMSE beats the champion's by the
configured margin and beats the baseline's. Plain code: no Dagster here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

RMSE = "root_mean_squared_error"
"""The metric the gate compares, as MLflow's regressor evaluator names it."""

STRICTLY_BETTER = 1e-9
"""How much lower (in minutes) an RMSE must be to count as better when no margin is asked for:
MLflow's thresholds skip a comparison whose minimum change is 0."""

EVALUATOR_CONFIG = {"log_model_explainability": False}
"""SHAP explanations are not what the gate needs, and cost seconds."""


def mlflow_regression_metrics(
    actual: np.ndarray, predicted: np.ndarray, prefix: str
) -> dict[str, float]:
    """MLflow's regressor metrics of `predicted` against `actual`, logged to the active run with
    names starting `prefix` and returned without it (`root_mean_squared_error`, ...)."""
    import mlflow
    import pandas as pd

    frame = pd.DataFrame({"actual": actual, "predicted": predicted})
    result = mlflow.models.evaluate(
        data=frame,
        predictions="predicted",
        targets="actual",
        model_type="regressor",
        evaluator_config={**EVALUATOR_CONFIG, "metric_prefix": prefix},
    )
    return {
        name.removeprefix(prefix): float(value)
        for name, value in result.metrics.items()
        if name.startswith(prefix)
    }


def model_metrics_on(pipeline: Any, day_features: pl.DataFrame, prefix: str) -> dict[str, float]:
    """MLflow's regressor metrics of a registered `pipeline` on one day's `day_features`, as
    `model_evaluation` scores the challenger and the champion (see `mlflow_regression_metrics`)."""
    from ml_assets.lib.features import TARGET
    from ml_assets.lib.model_input import model_input
    from ml_assets.lib.model_params import ALL_FEATURES

    predicted = pipeline.predict(model_input(day_features, ALL_FEATURES))
    return mlflow_regression_metrics(day_features[TARGET].to_numpy(), predicted, prefix)


@dataclass(frozen=True)
class GateResult:
    """Whether the challenger passed one comparison of the gate, and why in one sentence."""

    passed: bool
    against: str
    challenger_rmse: float
    other_rmse: float | None
    required_rmse: float | None
    message: str

    def as_metadata(self) -> dict[str, Any]:
        return {
            "challenger_rmse": self.challenger_rmse,
            f"{self.against}_rmse": self.other_rmse,
            "required_rmse_at_most": self.required_rmse,
        }


def gate(
    challenger: dict[str, float],
    other: dict[str, float] | None,
    *,
    against: str,
    margin: float = 0.0,
) -> GateResult:
    """Does the challenger's RMSE beat `other`'s by at least `margin` (a share: 0.02 = 2 % lower)?

    `challenger` and `other` are metrics from `mlflow_regression_metrics` on the same trips;
    `other` None means there is nothing to beat (no champion yet), which passes. The comparison
    itself is MLflow's (`validate_evaluation_results` with a `MetricThreshold`).
    """
    import mlflow
    from mlflow.models import MetricThreshold
    from mlflow.models.evaluation import EvaluationResult
    from mlflow.models.evaluation.validation import ModelValidationFailedException

    rmse = challenger[RMSE]
    if other is None:
        return GateResult(
            True, against, rmse, None, None, f"no {against} to beat: the challenger passes"
        )
    other_rmse = other[RMSE]
    threshold = (
        MetricThreshold(min_relative_change=float(margin), greater_is_better=False)
        if margin > 0
        else MetricThreshold(min_absolute_change=STRICTLY_BETTER, greater_is_better=False)
    )
    required = other_rmse - (margin * abs(other_rmse) if margin > 0 else STRICTLY_BETTER)
    wanted = f"{margin:.1%} lower than" if margin > 0 else "lower than"
    try:
        mlflow.validate_evaluation_results(
            {RMSE: threshold},
            EvaluationResult(metrics=challenger, artifacts={}),
            EvaluationResult(metrics=other, artifacts={}),
        )
    except ModelValidationFailedException as failure:
        return GateResult(
            False,
            against,
            rmse,
            other_rmse,
            required,
            f"challenger RMSE {rmse:.3f} is not {wanted} the {against}'s {other_rmse:.3f} "
            f"on the same trips (MLflow: {str(failure).strip()})",
        )
    return GateResult(
        True,
        against,
        rmse,
        other_rmse,
        required,
        f"challenger RMSE {rmse:.3f} is {wanted} the {against}'s {other_rmse:.3f}",
    )
