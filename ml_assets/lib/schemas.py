"""Table schemas, declared once with pandera's polars API and used everywhere a table is checked.

`TRIP_FRAME_SCHEMA` is what every trip table looks like after normalization (`raw_trips`, the
sample source, every TLC file read), `FEATURE_FRAME_SCHEMA` is `trip_features` and
`PREDICTION_FRAME_SCHEMA` is `trip_duration_predictions`. The asset checks validate each day's
outputs with all three. No Dagster here.

This module imports `ml_assets.lib.trip_schema` (for `TRIP_SCHEMA`), never the other way round:
normalization builds its columns with their dtypes and checks repeated trips with plain polars, so
it needs no pandera (which imports pandas, ~0.4 s, in every process that reads trips).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandera.polars as pa
import polars as pl

from ml_assets.lib.features import (
    FEATURE_SCHEMA,
    MAX_DURATION_MINUTES,
    MAX_LOCATION_ID,
    MAX_TRIP_DISTANCE_MILES,
    MIN_DURATION_MINUTES,
    MIN_LOCATION_ID,
    TARGET,
)
from ml_assets.lib.trip_schema import TRIP_SCHEMA


def _trip_column(name: str, dtype: pl.DataType) -> pa.Column:
    if name == "trip_key":
        # Not unique here: a trip repeated in full repeats its key, and a few such repeats are
        # tolerated (WARN) by the repeated-trips check, which has the tolerance; features keep one.
        return pa.Column(dtype, nullable=False)
    # Raw trips are the day as the source reported it: values may be missing (null rates are a
    # separate, warning-level check), but every column must exist with its normalized dtype.
    return pa.Column(dtype, nullable=True)


TRIP_FRAME_SCHEMA = pa.DataFrameSchema(
    {name: _trip_column(name, dtype) for name, dtype in TRIP_SCHEMA.items()},
    name="trips",
    strict=True,
    ordered=True,
    description="Normalized trips: every column of TRIP_SCHEMA in order, every trip keyed.",
)

_FEATURE_CHECKS: dict[str, list[pa.Check]] = {
    "PULocationID": [pa.Check.in_range(MIN_LOCATION_ID, MAX_LOCATION_ID)],
    "DOLocationID": [pa.Check.in_range(MIN_LOCATION_ID, MAX_LOCATION_ID)],
    "trip_distance": [pa.Check.in_range(0.0, MAX_TRIP_DISTANCE_MILES)],
    "pickup_hour": [pa.Check.in_range(0, 23)],
    "pickup_dow": [pa.Check.in_range(1, 7)],
    TARGET: [pa.Check.in_range(MIN_DURATION_MINUTES, MAX_DURATION_MINUTES)],
}

FEATURE_FRAME_SCHEMA = pa.DataFrameSchema(
    {
        name: pa.Column(
            dtype,
            checks=_FEATURE_CHECKS.get(name, []),
            nullable=False,
            unique=name == "trip_key",
        )
        for name, dtype in FEATURE_SCHEMA.items()
    },
    name="trip_features",
    strict=True,
    ordered=True,
    description="Model-ready trips: no nulls, target within the cleaning bounds, valid zones.",
)

PREDICTION_FRAME_SCHEMA = pa.DataFrameSchema(
    {
        "trip_key": pa.Column(pl.String, nullable=False, unique=True),
        "pickup_datetime": pa.Column(pl.Datetime("us"), nullable=False),
        "PULocationID": pa.Column(pl.Int32, nullable=False),
        "DOLocationID": pa.Column(pl.Int32, nullable=False),
        "trip_distance": pa.Column(pl.Float64, nullable=False),
        # Plausibility of the values is measured separately (quality.implausible_predictions):
        # a few odd values are a warning, not a broken table.
        "predicted_duration_min": pa.Column(pl.Float64, nullable=False),
        "model_version": pa.Column(pl.String, nullable=False),
    },
    name="trip_duration_predictions",
    strict=True,
    ordered=True,
    description="One prediction per trip, with the model version that made it.",
)


MISSING = "column missing"
UNEXPECTED = "column not in schema"
DTYPE = "dtype "


@dataclass(frozen=True)
class SchemaProblem:
    """One way a table breaks its schema: a column, the rule it breaks and on how many rows."""

    column: str
    rule: str
    failing_rows: int
    examples: tuple[str, ...]

    def __str__(self) -> str:
        if self.rule == MISSING:
            return f"column {self.column} missing"
        if self.rule == UNEXPECTED:
            return f"unexpected column {self.column}"
        if self.rule.startswith(DTYPE):
            expected = self.rule.removeprefix(DTYPE)
            return f"column {self.column} has dtype {', '.join(self.examples)}, expected {expected}"
        where = f"column {self.column}" if self.column else "table"
        rows = f" in {self.failing_rows} row(s)" if self.failing_rows else ""
        examples = f" (e.g. {', '.join(self.examples)})" if self.examples else ""
        return f"{where}: {self.rule} failed{rows}{examples}"


def schema_problems(schema: pa.DataFrameSchema, frame: pl.DataFrame) -> list[SchemaProblem]:
    """Every rule of `schema` that `frame` breaks, one entry per column and rule; empty if valid."""
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        return _summarize(errors.failure_cases)
    return []


def schema_problems_by_key(
    schema: pa.DataFrameSchema, frames: Mapping[str, pl.DataFrame]
) -> dict[str, list[SchemaProblem]]:
    """`schema_problems` of every frame, keyed like `frames` (days, say); valid frames are left out.

    Frames with the same columns and dtypes are validated together as one table, and each
    failing row is traced back to its frame: validating 90 days at once costs about as much as
    validating one (pandera's cost is per call, not per row). A rule over the whole table, such as
    unique trip keys, then holds across the frames too.
    """
    by_columns: dict[tuple[tuple[str, pl.DataType], ...], list[str]] = {}
    for key, frame in frames.items():
        by_columns.setdefault(tuple(frame.schema.items()), []).append(key)
    problems: dict[str, list[SchemaProblem]] = {}
    for keys in by_columns.values():
        combined = pl.concat([frames[key] for key in keys], how="vertical")
        try:
            schema.validate(combined, lazy=True)
        except pa.errors.SchemaErrors as errors:
            for key, cases in _failure_cases_by_key(errors.failure_cases, keys, frames).items():
                problems[key] = _summarize(cases)
    return {key: problems[key] for key in frames if key in problems}


def _failure_cases_by_key(
    failure_cases: pl.DataFrame, keys: list[str], frames: Mapping[str, pl.DataFrame]
) -> dict[str, pl.DataFrame]:
    """Split the failure cases of concatenated `frames[keys]` by the frame each row came from.

    Cases without a row (a missing column, a wrong dtype) concern every frame of the group.
    """
    starts = pl.Series([0, *pl.Series([frames[key].height for key in keys]).cum_sum()[:-1]])
    row_cases = failure_cases.filter(pl.col("index").is_not_null())
    frame_of_row = pl.Series(starts.search_sorted(row_cases["index"], side="right")) - 1
    row_cases = row_cases.with_columns(_frame=frame_of_row)
    table_cases = failure_cases.filter(pl.col("index").is_null())
    split = {}
    for position, key in enumerate(keys):
        cases = pl.concat(
            [table_cases, row_cases.filter(pl.col("_frame") == position).drop("_frame")],
            how="vertical_relaxed",
        )
        if cases.height:
            split[key] = cases
    return split


def _summarize(failure_cases: pl.DataFrame) -> list[SchemaProblem]:
    problems = []
    grouped = failure_cases.with_columns(pl.col("column").fill_null("")).group_by(
        "column", "check", maintain_order=True
    )
    for (column, check), cases in grouped:
        examples = tuple(str(value) for value in cases["failure_case"].unique(maintain_order=True))
        # pandera reports missing and unexpected columns as table-level failures naming them.
        if check == "column_in_dataframe":
            problems.extend(SchemaProblem(name, MISSING, 0, ()) for name in examples)
            continue
        if check == "column_in_schema":
            problems.extend(SchemaProblem(name, UNEXPECTED, 0, ()) for name in examples)
            continue
        if check.startswith("dtype("):
            expected = check.removeprefix("dtype(").removesuffix(")").strip("'")
            problems.append(SchemaProblem(str(column), f"{DTYPE}{expected}", 0, examples[:1]))
            continue
        rows = cases.filter(pl.col("index").is_not_null()).height
        problems.append(
            SchemaProblem(
                column=str(column), rule=str(check), failing_rows=rows, examples=examples[:3]
            )
        )
    return problems
