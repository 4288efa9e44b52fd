"""Alerts: a message for every failed run, every successful daily or training run, every failed
asset check and every model-quality regression, sent through the `notifier` resource.

One module per alert (`failure_alerts`, `success_alerts`, `check_alerts`, `quality_alerts`), the
run-reading they share in `run_events`; this module assembles them.

Each sensor keeps a cursor in the Dagster instance (the run-status records already seen, the run
status sensor's built-in one, or the storage id of the last evaluation handled), so every event is
announced once, across ticks and daemon restarts. A sensor turned on for the first time starts
from that moment: history is not replayed. Sending never raises (the notifier retries with
backoff, then logs and drops), so a chat outage cannot fail a sensor tick or a pipeline.
"""

import dagster as dg

from ml_assets.sensors.check_alerts import failed_check_alert
from ml_assets.sensors.failure_alerts import run_failure_alert
from ml_assets.sensors.quality_alerts import build_model_quality_regression_alert
from ml_assets.sensors.success_alerts import run_success_alert
from ml_assets.settings import Settings

__all__ = ["build_alert_sensors", "failed_check_alert", "run_failure_alert", "run_success_alert"]


def build_alert_sensors(settings: Settings) -> list[dg.SensorDefinition]:
    """The four alert sensors, the regression alert with the margin and trailing days of
    `settings`."""
    return [
        run_failure_alert,
        run_success_alert,
        failed_check_alert,
        build_model_quality_regression_alert(
            margin=settings.rmse_regression_margin,
            trailing_days=settings.rmse_trailing_days,
        ),
    ]
