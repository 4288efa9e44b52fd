"""`challenger_validation`: the promotion gate's answer for one day, made against the champion
actually going into the day, and kept true in the registry when it says no.

Walk-forward: the gate of day D compares the challenger with `champion_going_into(D)` as the
registry has it at gate time, after the decision of D-1 is final (`ml_assets.assets.
previous_decision`). When that champion is not the one `model_evaluation` scored (D-1 was
promoted after D was evaluated), the validation scores it itself on D's trips.

Withdrawal: a gate of D that fails withdraws what an earlier gate of D decided (see
`challenger_validation`).
"""

from collections.abc import Iterator
from dataclasses import asdict, replace
from datetime import date
from typing import Any

import dagster as dg
import polars as pl

from ml_assets.assets.champion import champion_observation
from ml_assets.assets.first_day import first_day_metadata, first_day_record, is_first_day
from ml_assets.assets.previous_decision import PreviousDecisionConfig, wait_for_decision_before
from ml_assets.failures import failing_without_retries
from ml_assets.lib.promotion_gate import RMSE, GateResult, gate, model_metrics_on
from ml_assets.lib.registry import ModelRegistry, RegisteredModel
from ml_assets.lib.registry_labels import Decision
from ml_assets.resources.mlflow import MlflowTracking, ModelRegistryResource
from ml_assets.resources.promotion import PromotionPolicy

WITHDRAWN_BY = "promotion gate (a later run of the day failed it)"


class ValidationConfig(PreviousDecisionConfig):
    """How long the gate of a day waits for the decision of the day before."""


def gate_metrics(
    record: dict[str, Any], champion: RegisteredModel | None, champion_rmse: float | None
) -> dict[str, Any]:
    """The numbers a decision about the challenger of `record` (an evaluation) is made on, with
    the champion it was compared with."""
    return {
        "evaluation_day": record["date"],
        "challenger_version": record["challenger"]["version"],
        "challenger_rmse": record["challenger"]["rmse"],
        "champion_version": champion.version if champion else None,
        "champion_rmse": champion_rmse,
        "baseline_rmse": record["baseline"]["rmse"],
    }


def challenger_validation(
    context: dg.AssetExecutionContext,
    config: ValidationConfig,
    model_evaluation: dict[str, Any],
    trip_features: pl.LazyFrame,
    model_registry: ModelRegistryResource,
    mlflow_tracking: dg.ResourceParam[MlflowTracking],
    promotion_policy: PromotionPolicy,
) -> Iterator[dg.Output | dg.AssetObservation]:
    """MLflow's model validation of the day's challenger, on the metrics `model_evaluation`
    computed with `mlflow.models.evaluate` on the day's trips: does its RMSE beat the champion's
    by the promotion margin (ML_ASSETS_PROMOTION_MARGIN), and the zone-pair baseline's?

    Its blocking checks `challenger_beats_champion` and `challenger_beats_baseline` report the two
    answers; `model_promotion` runs only when both passed.

    Walk-forward: it first waits (at most `previous_decision_wait_seconds`) for a pending
    decision of the day before, then compares with the champion going into the day as the
    registry has it now; if that is not the champion `model_evaluation` scored (the day before
    was promoted after this day was evaluated), it scores that champion on the day's trips itself
    (`champion_rescored`).

    Withdrawal: when the gate fails, an earlier promotion (or candidacy) decided on this day is
    withdrawn here, and the `champion` alias moves back to the recorded champion. Here, because
    this is the step that makes the day's gate answer and the only one of promotion_job that runs
    when the answer is no: the blocking checks then skip `model_promotion`, and checks only
    report. The withdrawal is recorded like any decision (MLflow tags, this step's metadata, an
    observation of `champion_model`).

    On the first day of the loop there is no challenger: its record says so (`first_day`).
    """
    with failing_without_retries(f"partition {context.partition_key}"):
        yield from _validate(
            context,
            config,
            model_evaluation,
            trip_features,
            model_registry,
            mlflow_tracking,
            promotion_policy,
        )


def _validate(
    context: dg.AssetExecutionContext,
    config: ValidationConfig,
    evaluation: dict[str, Any],
    trip_features: pl.LazyFrame,
    model_registry: ModelRegistryResource,
    mlflow_tracking: MlflowTracking,
    policy: PromotionPolicy,
) -> Iterator[dg.Output | dg.AssetObservation]:
    day = date.fromisoformat(context.partition_key)
    if is_first_day(evaluation):
        record = first_day_record(day, "there is no challenger to gate")
        yield dg.Output(record, metadata=first_day_metadata(record))
        return
    scored = evaluation.get("mlflow_metrics")
    if scored is None:
        raise dg.Failure(
            f"partition {day}: model_evaluation was made before the promotion gate existed (no "
            "MLflow metrics); materialize model_evaluation of the day again",
            allow_retries=False,
        )
    registry = model_registry.registry()
    wait_for_decision_before(
        context, day, config.previous_decision_wait_seconds, registry.prepare_loading
    )
    challenger_version = evaluation["challenger"]["version"]
    champion = registry.champion_going_into(day)
    if champion is not None and champion.version == challenger_version:
        champion = None  # the challenger itself won an earlier day: nothing else to beat
    evaluated = (evaluation.get("incumbent") or {}).get("version")
    rescored = (champion.version if champion else None) != evaluated
    champion_scores = scored["champion"]
    if rescored:
        context.log.info(
            f"{day}: the champion going into the day is now "
            f"{'v' + champion.version if champion else 'none'}, model_evaluation scored "
            f"{'v' + evaluated if evaluated else 'none'}: comparing with the champion going in"
        )
        champion_scores = (
            _score_champion(day, champion, trip_features, evaluation, registry, mlflow_tracking)
            if champion
            else None
        )
    margin = policy.margin
    results = {
        "champion": gate(scored["challenger"], champion_scores, against="champion", margin=margin),
        "baseline": gate(scored["challenger"], scored["baseline"], against="baseline"),
    }
    champion_rmse = (
        champion_scores[RMSE]
        if rescored and champion_scores
        else (evaluation.get("incumbent") or {}).get("rmse")
    )
    metrics = gate_metrics(evaluation, champion, champion_rmse)
    withdrawn: list[str] = []
    if not all(result.passed for result in results.values()):
        withdrawn = yield from _withdraw(day, results, metrics, margin, registry, model_registry)
        if withdrawn:
            context.log.warning(
                f"{day}: the gate failed; withdrew the earlier decision of the day about "
                + ", ".join(f"v{v}" for v in withdrawn)
            )
    record = {
        "date": day.isoformat(),
        "margin": margin,
        "metrics": metrics,
        "champion_rescored": rescored,
        "withdrawn_versions": withdrawn,
        **{against: asdict(result) for against, result in results.items()},
    }
    yield dg.Output(
        record,
        metadata={
            "challenger_version": challenger_version,
            "compared_with_champion": champion.version if champion else None,
            "champion_scored_by_evaluation": evaluated,
            "champion_rescored": rescored,
            "margin": margin,
            "beats_champion": results["champion"].passed,
            "beats_baseline": results["baseline"].passed,
            "champion_gate": results["champion"].message,
            "baseline_gate": results["baseline"].message,
            "withdrawn_versions": ", ".join(withdrawn) or None,
        },
    )


def _score_champion(
    day: date,
    champion: RegisteredModel,
    trip_features: pl.LazyFrame,
    evaluation: dict[str, Any],
    registry: ModelRegistry,
    mlflow_tracking: MlflowTracking,
) -> dict[str, float]:
    """MLflow's metrics of `champion` on the trips `model_evaluation` scored the challenger on,
    logged to an MLflow run of its own (`validation D`)."""
    import mlflow

    day_features = trip_features.filter(pl.col("pickup_datetime").dt.date() == day).collect()
    if day_features.height != evaluation["rows"]:
        raise dg.Failure(
            f"partition {day}: trip_features holds {day_features.height} trips of the day, "
            f"model_evaluation scored {evaluation['rows']}: the features changed since; "
            "materialize model_evaluation of the day again",
            allow_retries=False,
        )
    pipeline = registry.load(champion)
    mlflow_tracking.start_run()
    try:
        with mlflow.start_run(nested=True, run_name=f"validation {day}"):
            mlflow.set_tags(
                {
                    "dagster_partition": day.isoformat(),
                    "dagster_asset": "challenger_validation",
                    "challenger_version": evaluation["challenger"]["version"],
                    "champion_version": champion.version,
                }
            )
            metrics = model_metrics_on(pipeline, day_features, "champion_")
        mlflow.end_run()
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    return metrics


def _withdraw(
    day: date,
    results: dict[str, GateResult],
    metrics: dict[str, Any],
    margin: float,
    registry: ModelRegistry,
    model_registry: ModelRegistryResource,
) -> Iterator[dg.AssetObservation]:
    """Withdraw the earlier gate decisions of `day`; yield the champion's observation if the
    champion history changed. Returns the withdrawn versions."""
    reason = "the promotion gate of the day failed on a later run: " + "; ".join(
        result.message for result in results.values() if not result.passed
    )
    decision = Decision(
        "withdrawn", day.isoformat(), WITHDRAWN_BY, reason, {**metrics, "margin": margin}
    )
    withdrawal = registry.withdraw_decisions_of(day, decision)
    if withdrawal.promoted:
        withdrawn = {**decision.metrics, "withdrawn_versions": withdrawal.versions}
        yield champion_observation(
            withdrawal.champion, replace(decision, metrics=withdrawn), model_registry
        )
    return withdrawal.versions
