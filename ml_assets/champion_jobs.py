"""Launchpad jobs a person runs to decide about the champion, with no code and no MLflow UI.

- `review_candidate_job`: approve or reject a candidate (a challenger that passed the promotion
  gate under `ML_ASSETS_PROMOTION_APPROVAL=manual`).
- `rollback_champion_job`: move the champion back to an earlier version.

Each decision records who (the `decided_by` field, else the run's `dagster/user` tag), when, why
and the metrics it was made on: in the MLflow version's tags and as an observation of the
`champion_model` asset (and the op's output metadata). A version made champion serves the
predictions of the days after the latest evaluated day, so predictions already made never change.
"""

import json
from typing import Literal

import dagster as dg
from pydantic import Field

from ml_assets.assets.promotion import champion_observation, serves_from
from ml_assets.lib.registry import ModelRegistry, RegistryError
from ml_assets.lib.registry_labels import CANDIDATE, STATUS_TAG, Decision
from ml_assets.resources.mlflow import ModelRegistryResource

MODEL_EVALUATION = dg.AssetKey("model_evaluation")


class ChampionDecision(dg.Config):
    """What every decision about a version says: which version, why, and who decides."""

    version: str = Field(description="The MLflow model version number, such as '7'.")
    reason: str = Field(min_length=1, description="Why: recorded with the decision.")
    decided_by: str = Field(
        default="",
        description="Who decides; empty: the run's `dagster/user` tag, if the UI sets one.",
    )


class CandidateReview(ChampionDecision):
    """A person's decision about a candidate version."""

    decision: Literal["approve", "reject"] = Field(description="approve or reject.")


class ChampionRollback(ChampionDecision):
    """Move the champion back to an earlier version."""


def decision_day(instance: dg.DagsterInstance, registry: ModelRegistry, floor: str) -> str:
    """The day a decision made now is made with: the latest evaluated day (or decision in the
    registry), at least `floor`. What it makes champion serves the days after it."""
    evaluated = instance.get_materialized_partitions(MODEL_EVALUATION)
    return max([*evaluated, registry.latest_decision_day() or "", floor])


class _Deciding:
    """One person's decision about `config.version`: what the registry says of it now, and
    recording the decision once the op has checked that it may be made."""

    def __init__(
        self,
        context: dg.OpExecutionContext,
        config: ChampionDecision,
        model_registry: ModelRegistryResource,
    ) -> None:
        self.context = context
        self.config = config
        self.model_registry = model_registry
        self.registry = model_registry.registry()
        try:
            self.tags = self.registry.tags_of(config.version)
        except RegistryError as error:
            raise dg.Failure(
                f"version {config.version!r} of model {self.registry.model_name!r}: cannot be "
                f"read ({error})",
                allow_retries=False,
            ) from error
        self.champion = self.registry.current_champion()

    def refused(self, why: str) -> dg.Failure:
        """The failure of a decision that cannot be made, naming the config field."""
        return dg.Failure(
            f"{type(self.config).__name__}.version: v{self.config.version} {why}",
            allow_retries=False,
        )

    def record(self, kind: str, floor: str) -> dg.Output[None]:
        """Make the decision `kind` on the decision day (at least `floor`) and record who, when,
        why and the metrics: in the version's tags, as an observation of `champion_model` and
        in the op's output metadata."""
        config = self.config
        day = decision_day(self.context.instance, self.registry, floor)
        # The numbers the decision is made on: the version's own evaluation metrics.
        metrics = {
            "version": config.version,
            "trained_through": self.tags.get("trained_through"),
            **json.loads(self.tags.get("decision_metrics") or "{}"),
        }
        if kind != "rejected":
            metrics["replaced_version"] = self.champion.version if self.champion else None
        who = (
            config.decided_by.strip()
            or self.context.run.tags.get("dagster/user")
            or "unknown (no decided_by)"
        )
        decision = Decision(kind, day, who, config.reason, metrics)
        if kind == "rejected":
            self.registry.reject(config.version, decision)
            champion = self.champion
        else:
            champion = self.registry.choose(config.version, decision)
        serving = f"; v{champion.version} is champion from {serves_from(day)}" if champion else ""
        self.context.log.info(
            f"v{config.version} {kind.replace('_', ' ')} by {who}{serving}: {config.reason}"
        )
        if champion is not None:
            self.context.log_event(champion_observation(champion, decision, self.model_registry))
        return dg.Output(
            None,
            metadata={
                "version": config.version,
                "champion_version": champion.version if champion else None,
                "serves_from": serves_from(day),
                **decision.as_dict(),
                "metrics": dg.MetadataValue.json(metrics),
            },
        )


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
    deciding = _Deciding(context, config, model_registry)
    status = deciding.tags.get(STATUS_TAG)
    if status != CANDIDATE:
        candidates = deciding.registry.versions_with_status(CANDIDATE)
        raise deciding.refused(
            f"is not a candidate (status: {status or 'none'}); candidates: "
            + (", ".join(f"v{m.version}" for m in candidates) or "none")
        )
    kind = "approved" if config.decision == "approve" else "rejected"
    return deciding.record(kind, floor=deciding.tags.get("candidate_on", ""))


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
    deciding = _Deciding(context, config, model_registry)
    if deciding.champion is not None and deciding.champion.version == config.version:
        raise deciding.refused("is already the champion")
    return deciding.record("rolled_back", floor=deciding.tags.get("trained_through", ""))


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
