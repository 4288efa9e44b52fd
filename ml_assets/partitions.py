"""The daily partitions every time-based asset shares, and how they map onto each other."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg


@dataclass(frozen=True)
class DailyPartitioning:
    """The days of the loop and the windows of days a model reads, built from the settings.

    `partitions`: one partition per calendar day of pickups, from `ML_ASSETS_START_DATE` to
    `ML_ASSETS_END_DATE` when set (a historical run), else to the last complete day.
    `training_window_days`: how many days a model trains on (`ML_ASSETS_TRAINING_WINDOW_DAYS`).
    """

    partitions: dg.DailyPartitionsDefinition
    training_window_days: int

    @classmethod
    def starting(
        cls, start_date: str, training_window_days: int, end_date: str | None = None
    ) -> DailyPartitioning:
        # Dagster's end date is the first day left out.
        end = (date.fromisoformat(end_date) + timedelta(days=1)).isoformat() if end_date else None
        return cls(
            dg.DailyPartitionsDefinition(start_date=start_date, end_date=end), training_window_days
        )

    @property
    def first_day(self) -> date:
        """The first day of the loop: no model was trained before it."""
        return self.partitions.start.date()

    @property
    def last_day(self) -> date | None:
        """The last day of a historical run (`ML_ASSETS_END_DATE`); None when the days go on."""
        end = self.partitions.end
        return None if end is None else end.date() - timedelta(days=1)

    def newest_of(self, day: date) -> date:
        """`day`, or the last day of a historical run if it ends before `day`."""
        return day if self.last_day is None else min(day, self.last_day)

    @property
    def training_window(self) -> dg.TimeWindowPartitionMapping:
        """The model of day D trains on days D-(window-1)..D (days before the start are left out)."""
        return _days_back(-(self.training_window_days - 1), 0)

    @property
    def previous_day(self) -> dg.TimeWindowPartitionMapping:
        """Day D-1: day D is scored with what was learned through the day before."""
        return _days_back(-1, -1)

    @property
    def window_and_day(self) -> dg.TimeWindowPartitionMapping:
        """Day D and the training window of the model of day D-1, which the baseline learns from."""
        return _days_back(-self.training_window_days, 0)


def _days_back(start_offset: int, end_offset: int) -> dg.TimeWindowPartitionMapping:
    # allow_nonexistent_upstream_partitions is marked beta; the windows need it so that the first
    # days, whose windows reach before the start date, read the days that do exist.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.TimeWindowPartitionMapping(
            start_offset=start_offset,
            end_offset=end_offset,
            allow_nonexistent_upstream_partitions=True,
        )


def window_days(mapping: dg.PartitionMapping | None) -> int:
    """How many days a `TimeWindowPartitionMapping` reaches back from the day itself, inclusive."""
    if not isinstance(mapping, dg.TimeWindowPartitionMapping):
        raise TypeError(f"expected a window of days, got {mapping!r}")
    return mapping.end_offset - mapping.start_offset + 1
