"""The loop's definitions as most tests use them: its default days (from 2021-01-01, 28-day
training windows), built the way `ml_assets.definitions.build_definitions` builds them.

Tests that need other settings build their own with `build_definitions(settings)`.
"""

import dagster as dg

from ml_assets.assets import build_assets
from ml_assets.checks import build_asset_checks
from ml_assets.partitions import DailyPartitioning

DAYS = DailyPartitioning.starting("2021-01-01", training_window_days=28)
TRAINING_WINDOW_DAYS = DAYS.training_window_days

ASSETS: list[dg.AssetsDefinition] = build_assets(DAYS)
"""Every asset of the loop."""

ASSET_CHECKS: list[dg.AssetChecksDefinition] = build_asset_checks(DAYS)
"""Every asset check of the loop."""

_BY_NAME = {asset.key.to_user_string(): asset for asset in ASSETS}
taxi_zones = _BY_NAME["taxi_zones"]
raw_trips = _BY_NAME["raw_trips"]
trip_features = _BY_NAME["trip_features"]
duration_model = _BY_NAME["duration_model"]
model_evaluation = _BY_NAME["model_evaluation"]
trip_duration_predictions = _BY_NAME["trip_duration_predictions"]

INGESTION_AND_FEATURES = [taxi_zones, raw_trips, trip_features]
"""The assets up to the features: what the model and its checks read."""
WITHOUT_PREDICTIONS = [*INGESTION_AND_FEATURES, duration_model, model_evaluation]
