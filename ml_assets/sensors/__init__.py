"""Sensors: new TLC publications, retrained models, messages on success and failure, stuck runs,
catch-up of missed days, freshness and the daily health summary."""

import dagster as dg

from ml_assets.lib.run_health import WaitLimits
from ml_assets.partitions import DailyPartitioning
from ml_assets.sensors.alerts import build_alert_sensors
from ml_assets.sensors.catch_up import build_catch_up_sensor
from ml_assets.sensors.champion import build_promotion_sensor, champion_alias_sensor
from ml_assets.sensors.freshness import build_freshness_sensor, freshness_rule
from ml_assets.sensors.health_summary import build_health_summary_sensor
from ml_assets.sensors.publication import build_publication_sensor
from ml_assets.sensors.retrain import evaluate_retrained_model
from ml_assets.sensors.stuck_runs import run_health_sensors
from ml_assets.settings import Settings


def build_sensors(settings: Settings, days: DailyPartitioning) -> list[dg.SensorDefinition]:
    """Every sensor of the code location, configured from `settings`."""
    return [
        build_publication_sensor(days),
        evaluate_retrained_model,
        build_promotion_sensor(days),
        champion_alias_sensor,
        *build_alert_sensors(settings),
        *run_health_sensors(
            WaitLimits(
                queued_minutes=settings.queued_alert_minutes,
                pool_minutes=settings.pool_wait_alert_minutes,
            )
        ),
        build_catch_up_sensor(days, settings.catch_up_days),
        build_freshness_sensor(freshness_rule(settings, days)),
        build_health_summary_sensor(freshness_rule(settings, days)),
    ]
