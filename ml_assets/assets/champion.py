"""`champion_model`: the MLflow alias `champion`, and the observation recording each change of it.

Every change of the alias, whoever made it (the promotion gate, its withdrawal, a person's approval
or rollback, or someone moving the alias in MLflow), is an observation of `champion_model` with
who, when, why and the metrics.
"""

from datetime import date, timedelta

import dagster as dg

from ml_assets.lib.registry import RegisteredModel
from ml_assets.lib.registry_labels import Decision
from ml_assets.resources.mlflow import ModelRegistryResource

CHAMPION_MODEL = dg.AssetKey("champion_model")


def serves_from(decision_day: str) -> str:
    """The first day whose predictions a champion chosen on `decision_day` makes."""
    return (date.fromisoformat(decision_day) + timedelta(days=1)).isoformat()


def champion_observation(
    champion: RegisteredModel | None,
    decision: Decision,
    model_registry: ModelRegistryResource,
) -> dg.AssetObservation:
    """An observation of `champion_model`: the version the alias now points at (None: no
    champion left, after the only promotion was withdrawn), and the decision."""
    return dg.AssetObservation(
        asset_key=CHAMPION_MODEL,
        metadata={
            "champion_version": champion.version if champion else None,
            "model_uri": champion.uri if champion else None,
            "trained_through": champion.trained_through if champion else None,
            "model_version_link": dg.MetadataValue.url(
                model_registry.model_version_url(champion.version)
            )
            if champion
            else None,
            "decision": decision.kind,
            "decision_day": decision.day,
            "serves_from": serves_from(decision.day),
            "decided_by": decision.by,
            "decided_at": decision.at,
            "reason": decision.reason,
            "metrics": dg.MetadataValue.json(decision.metrics),
        },
    )
