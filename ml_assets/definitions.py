"""The ml_assets code location: every asset, check, job, schedule, sensor and resource."""

import dagster as dg

from ml_assets.assets import features, ingestion, model, predictions
from ml_assets.checks import asset_checks
from ml_assets.executors import executor_from_env
from ml_assets.jobs import jobs
from ml_assets.resources import build_resources
from ml_assets.schedules import schedules
from ml_assets.sensors import sensors
from ml_assets.settings import Settings

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([ingestion, features, model, predictions]),
    asset_checks=asset_checks,
    jobs=jobs,
    schedules=schedules,
    sensors=sensors,
    resources=build_resources(Settings.from_env()),
    executor=executor_from_env(),
)
