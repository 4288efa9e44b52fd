"""A day's model: trained on the window of days ending on the day, validated out of time.

The window's last day (or, in a one-day window, its last tenth of trips) is held out: the model
fitted on the rest is scored on it next to the zone-pair baseline. The model kept is then refit on
the whole window, so it has seen the most recent trips.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TypeVar

import polars as pl
import polars.selectors as cs

from ml_assets.lib.errors import NotEnoughTripsError
from ml_assets.lib.features import TARGET
from ml_assets.lib.model import TrainedModel, ZonePairBaseline, regression_metrics, train_model
from ml_assets.lib.model_params import ALL_FEATURES, ModelParams

MIN_WINDOW_TRIPS = 2
"""A model is validated before it is kept: at least one trip to train on and one to validate on."""

TRAINING_COLUMNS: tuple[str, ...] = (*ALL_FEATURES, TARGET)
"""The `trip_features` columns a day's model is trained and validated on, whatever its feature
groups: every model input (the pickup time and zones, which the validation split and the baseline
read, included) and the target. Not `trip_key`, which only predictions need."""

Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)


def training_rows(features: Frame) -> Frame:
    """`trip_features` as training holds it in memory: its `TRAINING_COLUMNS`, text as categories.

    About a third of the memory of the full rows (some 46 bytes a trip against 130): a trip key
    takes 48 bytes and each text column 16, a category 4. Models, the baseline and the validation
    split read the categories as they read the text, with the same results.
    """
    return features.select(TRAINING_COLUMNS).with_columns(cs.string().cast(pl.Categorical))


def window_start(day: date, days: int) -> date:
    """The first day of the `days`-day window ending on `day`."""
    return day - timedelta(days=days - 1)


def picked_up_between(first: date, last: date) -> pl.Expr:
    """Rows of `trip_features` picked up from `first` through `last`."""
    return pl.col("pickup_datetime").dt.date().is_between(first, last)


def windows_read_together(
    features: pl.LazyFrame, days: list[date], window_days: int, at_once: int
) -> Iterator[tuple[date, pl.DataFrame]]:
    """Each of `days` (in order) with the rows its `window_days`-day window reads, collected for
    `at_once` days at a time: one read per group of days, and memory that does not grow with the
    number of days."""
    for start in range(0, len(days), at_once):
        group = days[start : start + at_once]
        read = features.filter(
            picked_up_between(window_start(group[0], window_days), group[-1])
        ).collect()
        for day in group:
            yield day, read
        del read  # freed before the next group is read, not after


def training_window(features: pl.DataFrame, day: date, days: int) -> pl.DataFrame:
    """The rows of `trip_features` picked up in the `days` days ending on `day`.

    Raises `NotEnoughTripsError` naming the day when they are too few to train and validate on.
    """
    first = window_start(day, days)
    window = features.filter(picked_up_between(first, day))
    if window.height < MIN_WINDOW_TRIPS:
        raise NotEnoughTripsError(
            f"partition {day}: the {days}-day training window ({first}..{day}) holds "
            f"{window.height} trip_features row(s); at least {MIN_WINDOW_TRIPS} are needed, one "
            "to train on and one to validate on: materialize trip_features for those days first"
        )
    return window


def validation_split(window: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Hold out the window's last day (or last tenth of trips) to validate out of time."""
    days = window["pickup_datetime"].dt.date()
    last_day = days.max()
    if days.n_unique() > 1:
        return window.filter(days < last_day), window.filter(days == last_day)
    cut = int(window.height * 0.9)
    return window[:cut], window[cut:]


@dataclass(frozen=True)
class DayModel:
    """The model kept for a day, with how its holdout twin and the baseline validated."""

    model: TrainedModel
    validation: dict[str, float]
    baseline: dict[str, float]
    window_start: str
    window_end: str

    @property
    def metrics(self) -> dict[str, float]:
        """What is recorded of the day's model, as metrics."""
        return {
            "val_rmse": self.validation["rmse"],
            "val_mae": self.validation["mae"],
            "baseline_val_rmse": self.baseline["rmse"],
            "baseline_val_mae": self.baseline["mae"],
            "train_rows": float(self.model.train_rows),
            "fit_seconds": self.model.fit_seconds,
        }


def fit_day_model(window: pl.DataFrame, params: ModelParams) -> DayModel:
    """Validate `params` on the window's last day against the baseline, then refit on it all."""
    train, validation = validation_split(window)
    holdout_model = train_model(train, params)
    truth = validation[TARGET].to_numpy()
    pickup_days = window["pickup_datetime"].dt.date()
    return DayModel(
        model=train_model(window, params),
        validation=regression_metrics(truth, holdout_model.predict(validation)),
        baseline=regression_metrics(truth, ZonePairBaseline(train).predict(validation)),
        window_start=str(pickup_days.min()),
        window_end=str(pickup_days.max()),
    )
