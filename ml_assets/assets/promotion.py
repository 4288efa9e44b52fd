"""Promotion, its own steps after the evaluation, and the champion it moves.

`challenger_validation` of day D asks MLflow's model validation whether day D's challenger beats
the champion (by the promotion margin) and the zone-pair baseline; its blocking checks
(`ml_assets.checks.promotion_gate`) report the answer, and `model_promotion` runs only if both
passed. Under `auto` approval it moves the MLflow alias `champion` to the challenger; under
`manual` it labels the challenger a candidate, which a person approves or rejects with
`review_candidate_job`. A version made champion by the decision of day D serves predictions from
day D+1 on (see `ml_assets.lib.registry`).

A day has one decision, its latest: a later run of day D whose gate fails withdraws the earlier
promotion (or candidacy) of D, and the champion goes back (`ml_assets.assets.validation`). Days are
decided in day order: the gate of D waits for the decision of D-1 and compares with the champion
going into D at gate time (`ml_assets.assets.previous_decision`).

`champion_model` stands for the `champion` alias itself: every change of it, whoever made it
(this step, a person's approval or rollback, or someone moving the alias in MLflow), is recorded as
an observation of it, with who, when, why and the metrics.
"""

from collections.abc import Iterator
from datetime import date
from typing import Any

import dagster as dg

from ml_assets.assets.champion import CHAMPION_MODEL, champion_observation, serves_from
from ml_assets.assets.first_day import first_day_metadata, first_day_record, is_first_day
from ml_assets.assets.training import MODEL_GROUP
from ml_assets.assets.validation import challenger_validation
from ml_assets.failures import failing_without_retries
from ml_assets.lib.registry_labels import Decision
from ml_assets.partitions import DailyPartitioning
from ml_assets.resources.mlflow import ModelRegistryResource
from ml_assets.resources.promotion import PromotionPolicy
from ml_assets.retry_policies import mlflow_retry

__all__ = [
    "CHAMPION_MODEL",
    "challenger_validation",
    "champion_observation",
    "model_promotion",
    "promotion_assets",
    "serves_from",
]


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
    On the first day of the loop there is nothing to decide: its record says so (`first_day`).
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
    if is_first_day(validation):
        record = first_day_record(day, "there is nothing to decide; the champion stays")
        yield dg.Output(
            {**record, "outcome": "nothing to decide"},
            metadata={**first_day_metadata(record), "outcome": "nothing to decide"},
        )
        return
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
    # One gate decision per day: an earlier one of the day about another challenger (the model
    # of the day before was retrained since) is withdrawn first.
    earlier = Decision(
        "withdrawn",
        day.isoformat(),
        "promotion gate (a later run of the day)",
        f"replaced by v{challenger.version}, which passed the gate of the day on a later run",
        metrics,
    )
    replaced = registry.withdraw_decisions_of(day, earlier, keep=challenger.version)
    if replaced.promoted:
        yield champion_observation(replaced.champion, earlier, model_registry)
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
    """The daily gate and promotion decision over the days of `days`, and the champion.

    Day order comes from `challenger_validation` waiting for the decision of the day before, not
    from self-dependencies (previous day) on these assets: in an asset backfill, what a failed
    run planned and did not materialize counts as failed, and so does everything downstream of
    it, later days of a self-dependent asset included. One day's failed gate (which skips its
    model_promotion) would then fail the decisions of every later day.
    """
    validation = dg.asset(
        group_name=MODEL_GROUP,
        partitions_def=days.partitions,
        # The day's trips, read lazily: scored only when the champion going into the day is not
        # the one model_evaluation scored.
        ins={"trip_features": dg.AssetIn()},
        kinds={"mlflow"},
        code_version="2",  # walk-forward: the champion going in at gate time; withdrawals
        retry_policy=mlflow_retry,
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
