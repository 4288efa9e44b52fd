"""The daily partitions every time-based asset shares, and how they map onto each other."""

import warnings

import dagster as dg

from ml_assets.settings import Settings

_settings = Settings.from_env()

daily_partitions = dg.DailyPartitionsDefinition(start_date=_settings.start_date)
"""One partition per calendar day of pickups, from `ML_ASSETS_START_DATE` (default 2021-01-01)."""

TRAINING_WINDOW_DAYS = _settings.training_window_days

# allow_nonexistent_upstream_partitions is marked beta; the windows below need it so that the
# first days, whose windows reach before the start date, read the days that do exist.
warnings.filterwarnings("ignore", message=".*allow_nonexistent_upstream_partitions.*")

training_window = dg.TimeWindowPartitionMapping(
    start_offset=-(TRAINING_WINDOW_DAYS - 1),
    end_offset=0,
    allow_nonexistent_upstream_partitions=True,
)
"""The model of day D trains on days D-(window-1)..D (days before the start date are left out)."""

previous_day = dg.TimeWindowPartitionMapping(
    start_offset=-1, end_offset=-1, allow_nonexistent_upstream_partitions=True
)
"""Day D-1: day D is scored with what was learned through the day before."""

window_and_day = dg.TimeWindowPartitionMapping(
    start_offset=-TRAINING_WINDOW_DAYS, end_offset=0, allow_nonexistent_upstream_partitions=True
)
"""Day D and the training window of the model of day D-1, which the baseline learns from."""
