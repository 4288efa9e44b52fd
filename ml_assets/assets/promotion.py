"""Promotion, its own steps after the evaluation, and the champion it moves.

`challenger_validation` of day D asks MLflow's model validation whether day D's challenger beats
the champion (by the promotion margin) and the zone-pair baseline; its blocking checks
(`ml_assets.checks.promotion_gate`) report the answer, and `model_promotion` runs only if both
passed. Under `auto` approval it
moves the MLflow alias `champion` to the challenger; under `manual` it labels the challenger a
candidate, which a person approves or rejects with `review_candidate_job`. A version made champion
by the decision of day D serves predictions from day D+1 on (see `ml_assets.lib.registry`).

`champion_model` stands for the `champion` alias itself: every change of it, whoever made it
(this step, a person's approval or rollback, or someone moving the alias in MLflow), is recorded as
an observation of it, with who, when, why and the metrics.
"""

from collections.abc import Iterator
from dataclasses import asdict
from datetime import date, timedelta
from typing import Any

import dagster as dg

from ml_assets.assets.training import MODEL_GROUP
from ml_assets.failures import failing_without_retries
from ml_assets.lib.promotion_gate import gate
from ml_assets.lib.registry import RegisteredModel
from ml_assets.lib.registry_labels import Decision
from ml_assets.partitions import DailyPartitioning
from ml_assets.resources.mlflow import ModelRegistryResource
from ml_assets.resources.promotion import PromotionPolicy
from ml_assets.retry_policies import mlflow_retry

CHAMPION_MODEL = dg.AssetKey("champion_model")


def serves_from(decision_day: str) -> str:
    """The first day whose predictions a champion chosen on `decision_day` makes."""
    return (date.fromisoformat(decision_day) + timedelta(days=1)).isoformat()


def champion_observation(
    champion: RegisteredModel,
    decision: Decision,
    model_registry: ModelRegistryResource,
) -> dg.AssetObservation:
    """An observation of `champion_model`: the version the alias now points at, and the decision."""
    return dg.AssetObservation(
        asset_key=CHAMPION_MODEL,
        metadata={
            "champion_version": champion.version,
            "model_uri": champion.uri,
            "trained_through": champion.trained_through,
            "model_version_link": dg.MetadataValue.url(
                model_registry.model_version_url(champion.version)
            ),
            "decision": decision.kind,
            "decision_day": decision.day,
            "serves_from": serves_from(decision.day),
            "decided_by": decision.by,
            "decided_at": decision.at,
            "reason": decision.reason,
            "metrics": dg.MetadataValue.json(decision.metrics),
        },
    )


def gate_metrics(record: dict[str, Any]) -> dict[str, Any]:
    """The numbers a decision about the challenger of `record` (an evaluation) is made on."""
    incumbent = record.get("incumbent") or {}
    return {
        "evaluation_day": record["date"],
        "challenger_version": record["challenger"]["version"],
        "challenger_rmse": record["challenger"]["rmse"],
        "champion_version": incumbent.get("version"),
        "champion_rmse": incumbent.get("rmse"),
        "baseline_rmse": record["baseline"]["rmse"],
    }


def challenger_validation(
    context: dg.AssetExecutionContext,
    model_evaluation: dict[str, Any],
    promotion_policy: PromotionPolicy,
) -> dg.MaterializeResult:
    """MLflow's model validation of the day's challenger, on the metrics `model_evaluation`
    computed with `mlflow.models.evaluate` on the day's trips: does its RMSE beat the champion's
    by the promotion margin (ML_ASSETS_PROMOTION_MARGIN), and the zone-pair baseline's?

    Its blocking checks `challenger_beats_champion` and `challenger_beats_baseline` report the two
    answers; `model_promotion` runs only when both passed.
    """
    day = context.partition_key
    scored = model_evaluation.get("mlflow_metrics")
    if scored is None:
        raise dg.Failure(
            f"partition {day}: model_evaluation was made before the promotion gate existed (no "
            "MLflow metrics); materialize model_evaluation of the day again",
            allow_retries=False,
        )
    margin = promotion_policy.margin
    results = {
        "champion": gate(
            scored["challenger"], scored["champion"], against="champion", margin=margin
        ),
        "baseline": gate(scored["challenger"], scored["baseline"], against="baseline"),
    }
    record = {
        "date": day,
        "margin": margin,
        "metrics": gate_metrics(model_evaluation),
        **{against: asdict(result) for against, result in results.items()},
    }
    return dg.MaterializeResult(
        value=record,
        metadata={
            "challenger_version": model_evaluation["challenger"]["version"],
            "margin": margin,
            "beats_champion": results["champion"].passed,
            "beats_baseline": results["baseline"].passed,
            "champion_gate": results["champion"].message,
            "baseline_gate": results["baseline"].message,
        },
    )


def model_promotion(
    context: dg.AssetExecutionContext,
    challenger_validation: dict[str, Any],
    model_registry: ModelRegistryResource,
    promotion_policy: PromotionPolicy,
) -> Iterator[dg.Output | dg.AssetObservation]:
    """The promotion decision about the day's challenger, once it passed the promotion gate.

    Runs only after the blocking checks `challenger_beats_champion` (by the promotion margin) and
    `challenger_beats_baseline` of `challenger_validation` passed; a challenger that fails them is
    never promoted and the champion stays. With `ML_ASSETS_PROMOTION_APPROVAL=auto` the
    challenger becomes champion (the MLflow alias `champion` moves, effective for the next day's
    predictions); with `manual` it becomes a candidate (`status=candidate` on its MLflow
    version) that a person approves or rejects from the Launchpad with `review_candidate_job`.
    """
    with failing_without_retries(f"partition {context.partition_key}"):
        yield from _decide(context, challenger_validation, model_registry, promotion_policy)


def _decide(
    context: dg.AssetExecutionContext,
    validation: dict[str, Any],
    model_registry: ModelRegistryResource,
    policy: PromotionPolicy,
) -> Iterator[dg.Output | dg.AssetObservation]:
    day = date.fromisoformat(context.partition_key)
    # The blocking checks gate this step in a job; asked for alone (without them), the same
    # answers are read here so that nothing can promote around the gate.
    failed = [
        validation[a]["message"] for a in ("champion", "baseline") if not validation[a]["passed"]
    ]
    if failed:
        raise dg.Failure(
            f"partition {day}: the challenger did not pass the promotion gate: "
            + "; ".join(failed),
            allow_retries=False,
        )
    registry = model_registry.registry()
    challenger = registry.version(validation["metrics"]["challenger_version"])
    reason = "; ".join(validation[a]["message"] for a in ("champion", "baseline"))
    metrics = {**validation["metrics"], "margin": validation["margin"]}
    version_link = dg.MetadataValue.url(model_registry.model_version_url(challenger.version))
    if policy.approval == "manual":
        decision = Decision("candidate", day.isoformat(), "promotion gate", reason, metrics)
        registry.mark_candidate(challenger, day, decision)
        champion = registry.current_champion()
        context.log.info(
            f"{day}: v{challenger.version} passed the gate and is a candidate awaiting approval "
            "(review_candidate_job)"
        )
        outcome = "candidate"
    else:
        decision = Decision("promoted", day.isoformat(), "promotion gate (auto)", reason, metrics)
        champion = registry.promote(challenger, day, decision)
        context.log.info(f"{day}: v{challenger.version} passed the gate: promoted to champion")
        yield champion_observation(champion, decision, model_registry)
        outcome = "promoted"
    yield dg.Output(
        {
            "date": day.isoformat(),
            "outcome": outcome,
            "approval": policy.approval,
            "challenger": challenger.as_dict(),
            "champion": champion.as_dict() if champion else None,
            "decision": decision.as_dict(),
        },
        metadata={
            "outcome": outcome,
            "promoted": outcome == "promoted",
            "challenger_version": challenger.version,
            "champion_version": champion.version if champion else None,
            "candidate_version": challenger.version if outcome == "candidate" else None,
            "approval": policy.approval,
            "margin": validation["margin"],
            "model_version_link": version_link,
            "decided_by": decision.by,
            "decided_at": decision.at,
            "reason": reason,
            "metrics": dg.MetadataValue.json(metrics),
        },
    )


def promotion_assets(days: DailyPartitioning) -> list[dg.AssetsDefinition]:
    """The daily gate and promotion decision over the days of `days`, and the champion."""
    validation = dg.asset(
        group_name=MODEL_GROUP,
        partitions_def=days.partitions,
        kinds={"mlflow"},
        code_version="1",
        tags={"stage": "promote"},
    )(challenger_validation)
    promotion = dg.asset(
        group_name=MODEL_GROUP,
        partitions_def=days.partitions,
        kinds={"mlflow"},
        code_version="1",
        retry_policy=mlflow_retry,
        tags={"stage": "promote"},
    )(model_promotion)
    champion = dg.AssetSpec(
        CHAMPION_MODEL,
        group_name=MODEL_GROUP,
        kinds={"mlflow"},
        deps=[promotion.key],
        tags={"stage": "promote"},
        description=(
            "The MLflow alias `champion`: the model that serves predictions. Not materialized: "
            "every change of it is an observation here (by model_promotion, review_candidate_job, "
            "rollback_champion_job, or seen by the champion_alias_sensor when someone moved the "
            "alias in MLflow), with who, when, why and the metrics it was decided on."
        ),
    )
    return [validation, promotion, dg.AssetsDefinition(specs=[champion])]
