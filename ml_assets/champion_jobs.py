"""Launchpad jobs a person runs to decide about the champion, with no code and no MLflow UI.

- `review_candidate_job`: approve or reject a candidate (a challenger that passed the promotion
  gate under `ML_ASSETS_PROMOTION_APPROVAL=manual`).
- `rollback_champion_job`: move the champion back to an earlier version.

Each decision records who (the `decided_by` field, else the run's `dagster/user` tag), when, why
and the metrics it was made on: in the MLflow version's tags and as an observation of the
`champion_model` asset (and the op's output metadata). A version made champion serves the
predictions of the days after the latest evaluated day, so predictions already made never change.
"""

from typing import Any, Literal

import dagster as dg
from pydantic import Field

from ml_assets.assets.promotion import champion_observation, serves_from
from ml_assets.lib.registry import ModelRegistry, RegistryError
from ml_assets.lib.registry_labels import CANDIDATE, STATUS_TAG, Decision
from ml_assets.resources.mlflow import ModelRegistryResource

MODEL_EVALUATION = dg.AssetKey("model_evaluation")


class CandidateReview(dg.Config):
    """A person's decision about a candidate version."""

    version: str = Field(description="The candidate's MLflow model version number, such as '7'.")
    decision: Literal["approve", "reject"] = Field(description="approve or reject.")
    reason: str = Field(min_length=1, description="Why: recorded with the decision.")
    decided_by: str = Field(
        default="",
        description="Who decides; empty: the run's `dagster/user` tag, if the UI sets one.",
    )


class ChampionRollback(dg.Config):
    """Move the champion back to an earlier version."""

    version: str = Field(description="The MLflow model version to make champion, such as '5'.")
    reason: str = Field(min_length=1, description="Why: recorded with the decision.")
    decided_by: str = Field(
        default="",
        description="Who decides; empty: the run's `dagster/user` tag, if the UI sets one.",
    )


def _who(context: dg.OpExecutionContext, decided_by: str) -> str:
    return decided_by.strip() or context.run.tags.get("dagster/user") or "unknown (no decided_by)"


def decision_day(instance: dg.DagsterInstance, registry: ModelRegistry, floor: str) -> str:
    """The day a decision made now is made with: the latest evaluated day (or decision in the
    registry), at least `floor`. What it makes champion serves the days after it."""
    evaluated = instance.get_materialized_partitions(MODEL_EVALUATION)
    return max([*evaluated, registry.latest_decision_day() or "", floor])


def _version_tags(registry: ModelRegistry, version: str) -> dict[str, str]:
    try:
        return registry.tags_of(version)
    except RegistryError as error:
        raise dg.Failure(
            f"version {version!r} of model {registry.model_name!r}: cannot be read ({error})",
            allow_retries=False,
        ) from error


def _current_metrics(registry: ModelRegistry, version: str) -> dict[str, Any]:
    """The numbers a person's decision is made on: the version's own evaluation metrics."""
    import json

    tags = registry.tags_of(version)
    recorded = json.loads(tags.get("decision_metrics") or "{}")
    return {"version": version, "trained_through": tags.get("trained_through"), **recorded}


@dg.op(
    description=(
        "Approve or reject a candidate version: approving makes it champion for the days after "
        "the latest evaluated day; rejecting labels it `rejected`. Records who, when, why and "
        "the metrics."
    ),
    tags={"stage": "promote"},
    # Nothing to store: the decision lives in the registry and in the output's metadata.
    out=dg.Out(dg.Nothing),
)
def review_candidate(
    context: dg.OpExecutionContext, config: CandidateReview, model_registry: ModelRegistryResource
) -> dg.Output[None]:
    registry = model_registry.registry()
    tags = _version_tags(registry, config.version)
    if tags.get(STATUS_TAG) != CANDIDATE:
        raise dg.Failure(
            f"CandidateReview.version: v{config.version} is not a candidate "
            f"(status: {tags.get(STATUS_TAG) or 'none'}); candidates: "
            + (
                ", ".join(f"v{m.version}" for m in registry.versions_with_status(CANDIDATE))
                or "none"
            ),
            allow_retries=False,
        )
    day = decision_day(context.instance, registry, tags.get("candidate_on", ""))
    kind = "approved" if config.decision == "approve" else "rejected"
    decision = Decision(
        kind,
        day,
        _who(context, config.decided_by),
        config.reason,
        _current_metrics(registry, config.version),
    )
    if kind == "approved":
        champion = registry.choose(config.version, decision)
    else:
        registry.reject(config.version, decision)
        champion = registry.current_champion()
    context.log.info(f"v{config.version} {kind} by {decision.by}: {config.reason}")
    if champion is not None:
        context.log_event(champion_observation(champion, decision, model_registry))
    return _decision_output(config.version, decision, champion)


@dg.op(
    description=(
        "Make an earlier version champion again, for the days after the latest evaluated day. "
        "Records who, when, why and the metrics."
    ),
    tags={"stage": "promote"},
    out=dg.Out(dg.Nothing),
)
def rollback_champion(
    context: dg.OpExecutionContext, config: ChampionRollback, model_registry: ModelRegistryResource
) -> dg.Output[None]:
    registry = model_registry.registry()
    tags = _version_tags(registry, config.version)
    current = registry.current_champion()
    if current is not None and current.version == config.version:
        raise dg.Failure(
            f"ChampionRollback.version: v{config.version} is already the champion",
            allow_retries=False,
        )
    day = decision_day(context.instance, registry, tags.get("trained_through", ""))
    metrics = _current_metrics(registry, config.version)
    metrics["replaced_version"] = current.version if current else None
    decision = Decision(
        "rolled_back", day, _who(context, config.decided_by), config.reason, metrics
    )
    champion = registry.choose(config.version, decision)
    context.log.info(
        f"champion rolled back to v{champion.version} by {decision.by} (serves the days after "
        f"{day}): {config.reason}"
    )
    context.log_event(champion_observation(champion, decision, model_registry))
    return _decision_output(config.version, decision, champion)


def _decision_output(version: str, decision: Decision, champion: Any) -> dg.Output[None]:
    return dg.Output(
        None,
        metadata={
            "version": version,
            "champion_version": champion.version if champion else None,
            "decision": decision.kind,
            "decision_day": decision.day,
            "serves_from": serves_from(decision.day),
            "decided_by": decision.by,
            "decided_at": decision.at,
            "reason": decision.reason,
            "metrics": dg.MetadataValue.json(decision.metrics),
        },
    )


@dg.job(
    description=(
        "Approve or reject a candidate model version from the Launchpad (config: version, "
        "decision approve|reject, reason, decided_by). Used when ML_ASSETS_PROMOTION_APPROVAL="
        "manual: model_promotion makes each challenger that passes the gate a candidate."
    ),
    tags={"ml_assets/purpose": "champion_decision"},
)
def review_candidate_job() -> None:
    review_candidate()


@dg.job(
    description=(
        "Move the MLflow alias `champion` back to an earlier version from the Launchpad (config: "
        "version, reason, decided_by). The next day's predictions use it."
    ),
    tags={"ml_assets/purpose": "champion_decision"},
)
def rollback_champion_job() -> None:
    rollback_champion()


champion_jobs = [review_candidate_job, rollback_champion_job]
