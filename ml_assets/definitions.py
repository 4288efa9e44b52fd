"""The ml_assets code location: every asset, check, job, schedule, sensor and resource."""

import dagster as dg

from ml_assets.assets import features, ingestion, model, predictions
from ml_assets.resources import build_resources
from ml_assets.settings import Settings

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([ingestion, features, model, predictions]),
    resources=build_resources(Settings.from_env()),
)
