"""The frame a model pipeline reads: `trip_features` columns cast for scikit-learn, plus the inputs
derived from them (`DERIVED_INPUTS`), so a logged pipeline needs nothing but scikit-learn to score.

Training, scoring and the benchmarks build it here, so a model is scored on exactly the inputs it
was trained on. No Dagster and no scikit-learn here.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import date

import pandas as pd
import polars as pl
from pandas.tseries.holiday import USFederalHolidayCalendar

from ml_assets.lib.features import MAX_LOCATION_ID, MIN_LOCATION_ID, underscore_joined
from ml_assets.lib.model_params import CATEGORICAL, DERIVED_INPUTS, model_inputs

NULL_CATEGORY = "None"
"""The category of a missing value, as pandas' `astype(str)` made it."""

ZONES = range(MIN_LOCATION_ID, MAX_LOCATION_ID + 1)
"""The zone IDs `trip_features` holds (its cleaning rules drop every other)."""

INDEXED_CATEGORIES = frozenset({"PULocationID", "DOLocationID", "PU_whole_minute"})
"""Categories whose few labels are made once, each row taking its own by index (see
`_indexed_category`): formatting a string per row and hashing it into a category was most of
the model input's time."""


def _derived(name: str, features: pl.DataFrame) -> pl.Expr:
    """The expression computing the derived input `name` (see `DERIVED_INPUTS`), but for
    `INDEXED_CATEGORIES`."""
    pickup = pl.col("pickup_datetime")
    if name == "pickup_minute":
        return pickup.dt.hour().cast(pl.Float64) * 60 + pickup.dt.minute()
    if name == "pickup_holiday":
        return pickup.dt.date().is_in(_holidays(features).implode()).cast(pl.Float64)
    if name == "pickup_whole_minute":
        return _whole_minute().cast(pl.Float64)
    if name == "borough_pair":
        # Joined per row: the boroughs are strings, and indexing them first took longer.
        return underscore_joined("pu_borough", "do_borough")
    if name == "pickup_days":
        return pickup.dt.epoch("us").cast(pl.Float64) / 86_400e6
    raise ValueError(f"derived model input {name!r} is not one of {sorted(DERIVED_INPUTS)}")


def _whole_minute() -> pl.Expr:
    """Whether the pickup time has no seconds: a multiple of 60 s since the epoch (pickups are
    microsecond datetimes), one remainder where reading the second and the nanosecond out of each
    pickup cost 6x more."""
    return (pl.col("pickup_datetime").dt.epoch("us") % 60_000_000).eq(0)


def _indexed_category(name: str) -> pl.Expr:
    """The input `name` of `INDEXED_CATEGORIES`: a zone ID, or the pickup zone and whether its
    time is a whole minute ("7_1")."""
    if name in ("PULocationID", "DOLocationID"):
        return _category_by_index(_zone_index(name), [str(zone) for zone in ZONES])
    if name == "PU_whole_minute":
        zone_and_minute = _zone_index("PULocationID") * 2 + _whole_minute().cast(pl.Int64)
        return _category_by_index(zone_and_minute, [f"{z}_{w}" for z in ZONES for w in (0, 1)])
    raise ValueError(f"model input {name!r} is not one of {sorted(INDEXED_CATEGORIES)}")


def _zone_index(name: str) -> pl.Expr:
    """The position of each row's zone ID in `ZONES`."""
    return pl.col(name).cast(pl.Int64) - MIN_LOCATION_ID


def _category_by_index(index: pl.Expr, labels: list[str]) -> pl.Expr:
    """`labels[i]` for each row's `index` i, as a category; `NULL_CATEGORY` for a null or an `i`
    outside `labels`."""
    table = pl.Series([*labels, NULL_CATEGORY], dtype=pl.Categorical)
    known = pl.when(index.is_between(0, len(labels) - 1)).then(index).otherwise(len(labels))
    return pl.lit(table).gather(known)


def _holidays(features: pl.DataFrame) -> pl.Series:
    """US federal holidays (observed) over the days of `features`' pickups."""
    days = features["pickup_datetime"].dt.date()
    first, last = days.min(), days.max()
    if first is None or last is None:
        return pl.Series("holiday", [], dtype=pl.Date)
    holidays = [day for year in range(first.year, last.year + 1) for day in _holidays_of(year)]  # type: ignore[union-attr]
    return pl.Series("holiday", holidays, dtype=pl.Date)


@functools.cache
def _holidays_of(year: int) -> tuple[date, ...]:
    """The observed US federal holidays of `year`: pandas takes some 25 ms to work a year out, and
    a process scoring day after day asks for the same year each time."""
    calendar = USFederalHolidayCalendar().holidays(start=f"{year}-01-01", end=f"{year}-12-31")
    return tuple(calendar.date)


def model_input(features: pl.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The pandas frame a pipeline takes (MLflow signatures are inferred from it).

    `columns` are `trip_features` columns (`params.features`, or `ALL_FEATURES` for a frame any
    model can score); the frame holds them and the inputs derived from them (`model_inputs`), so
    the logged pipeline needs nothing but scikit-learn to score it.
    """
    # Categories reach pandas as `category` columns: a code per row and each distinct string
    # once, where plain strings would be one Python object per row (six times the memory, and
    # the slowest part of the conversion). The encoders learn the same string categories either
    # way, MLflow's signature reads them as strings, and a pipeline trained on one scores the
    # other alike. A null category becomes "None", as pandas' `astype(str)` made it.
    # `split_blocks`: a column per pandas block, where by default pyarrow copies the floats into
    # one block of its own memory pool, which keeps the freed memory (0.5 GB at 10 million trips,
    # through the fit that follows) and takes longer.
    # Eagerly: collected lazily (2 ms less on a month), the same query made polars 2.1's streaming
    # engine panic ("assertion failed: i < self.len()") in the models benchmark's script, though
    # not on the same frame in a fresh process.
    return features.select(
        _model_input_column(name, features) for name in model_inputs(columns)
    ).to_pandas(split_blocks=True)


def _model_input_column(name: str, features: pl.DataFrame) -> pl.Expr:
    """The input `name` as the pipeline takes it: a category of strings or a float."""
    if name in INDEXED_CATEGORIES:
        return _indexed_category(name).alias(name)
    column = _derived(name, features) if name in DERIVED_INPUTS else pl.col(name)
    if name in CATEGORICAL:
        return column.cast(pl.String).fill_null(NULL_CATEGORY).cast(pl.Categorical).alias(name)
    return column.cast(pl.Float64).alias(name)
