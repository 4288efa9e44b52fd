"""Errors of bad input data, in a module of their own so every `lib` module can raise them.

Nothing here imports another `ml_assets` module: the trip schema, the zone lookup and the quality
measurements all raise these without importing each other.
"""

from __future__ import annotations


class TripSchemaError(ValueError):
    """A trip file (or zone lookup) lacks a required column or holds values it cannot hold.

    Retrying does not help: the same file fails the same way (see `ml_assets.failures`).
    """


class NotEnoughTripsError(ValueError):
    """A day, or a training window, holds too few `trip_features` rows for a step to do its work.

    Retrying does not help: the step reads what `trip_features` holds, which only a new
    materialization of the days concerned changes (see `ml_assets.failures`).
    """
