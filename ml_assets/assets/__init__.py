"""The asset graph: zones and raw trips, features, the model and its evaluation, predictions."""

import warnings

import dagster as dg

from ml_assets.assets.evaluation import evaluation_assets
from ml_assets.assets.features import features_assets
from ml_assets.assets.ingestion import ingestion_assets
from ml_assets.assets.predictions import predictions_assets
from ml_assets.assets.promotion import promotion_assets
from ml_assets.assets.training import training_assets
from ml_assets.partitions import DailyPartitioning

OWNERS = ["team:ml-platform"]
DOMAIN_TAGS = {"domain": "nyc_taxi"}
"""Every asset's owner and domain; each asset adds its own `stage` tag."""


def build_assets(days: DailyPartitioning) -> list[dg.AssetsDefinition]:
    """Every asset of the loop over the days of `days`, owned by the ML platform team."""
    # BackfillPolicy is marked beta; raw_trips and trip_features rely on its single-run policy.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)
        assets = [
            *ingestion_assets(days),
            *features_assets(days),
            *training_assets(days),
            *evaluation_assets(days),
            *promotion_assets(days),
            *predictions_assets(days),
        ]
    return [
        asset.map_asset_specs(lambda spec: spec.merge_attributes(owners=OWNERS, tags=DOMAIN_TAGS))
        for asset in assets
    ]
