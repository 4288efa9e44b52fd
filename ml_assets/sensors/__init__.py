"""Sensors: new TLC publications, and messages on success and failure."""

import dagster as dg

sensors: list[dg.SensorDefinition] = []
