"""Schedules built from the partitioned jobs."""

import dagster as dg

schedules: list[dg.ScheduleDefinition] = []
