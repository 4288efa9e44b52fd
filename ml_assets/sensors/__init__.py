"""Sensors: new TLC publications, and messages on success and failure."""

import dagster as dg

from ml_assets.sensors.alerts import alert_sensors
from ml_assets.sensors.publication import tlc_publication_sensor
from ml_assets.sensors.retrain import evaluate_retrained_model

sensors: list[dg.SensorDefinition] = [
    tlc_publication_sensor,
    evaluate_retrained_model,
    *alert_sensors,
]
