"""Case `features`: preparing January and February 2021 for a model, polars vs the course's pandas.

The reference is the MLOps Zoomcamp notebook: pandas `read_parquet`, the duration through
`.apply(lambda td: td.total_seconds() / 60)`, the 1..60 minute filter, zone IDs as strings, the
`PU_DO` pair, `to_dict(orient="records")` and a `DictVectorizer` (fit on January, applied to
February). The project's path is what `raw_trips` and `trip_features` run, up to the model's input:
`normalize_trips`, `build_trip_features` and `model_input`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import polars as pl
from sklearn.feature_extraction import DictVectorizer

from bench.harness import BenchContext, CaseResult, Goal, interleaved_medians, ratio
from bench.tlc_files import ZONE_LOOKUP, month_file, tlc_files
from ml_assets.lib.features import (
    MAX_DURATION_MINUTES,
    MIN_DURATION_MINUTES,
    duration_minutes,
    trip_features_frame,
)
from ml_assets.lib.model import ModelParams
from ml_assets.lib.model_input import model_input
from ml_assets.lib.trip_schema import normalize_trips, normalize_zones

MONTHS = ["2021-01", "2021-02"]
GOAL_SPEEDUP = 5.0


def course_read_dataframe(path: Path) -> pd.DataFrame:
    """The course's `read_dataframe`, as written in the notebook."""
    df = pd.read_parquet(path)
    df["duration"] = df.lpep_dropoff_datetime - df.lpep_pickup_datetime
    df.duration = df.duration.apply(lambda td: td.total_seconds() / 60)
    df = df[(df.duration >= 1) & (df.duration <= 60)]
    categorical = ["PULocationID", "DOLocationID"]
    df[categorical] = df[categorical].astype(str)
    return df


def course_features(folder: Path) -> dict[str, object]:
    """Both months through the course's preparation: kept rows and the DictVectorizer matrices."""
    vectorizer = DictVectorizer()
    out: dict[str, object] = {}
    for month in MONTHS:
        df = course_read_dataframe(folder / month_file(month))
        df["PU_DO"] = df["PULocationID"] + "_" + df["DOLocationID"]
        dicts = df[["PU_DO", "trip_distance"]].to_dict(orient="records")
        matrix = (
            vectorizer.fit_transform(dicts) if month == MONTHS[0] else vectorizer.transform(dicts)
        )
        out[month] = (df.shape[0], matrix)
    return out


def project_features(folder: Path) -> dict[str, object]:
    """Both months through the project's code, from the raw file to the model's input frame."""
    zones = normalize_zones(
        pl.read_csv(folder / ZONE_LOOKUP, infer_schema_length=0), source_name=ZONE_LOOKUP
    )
    columns = ModelParams().features
    out: dict[str, object] = {}
    for month in MONTHS:
        name = month_file(month)
        trips = normalize_trips(pl.read_parquet(folder / name), taxi_type="green", source_name=name)
        features = trip_features_frame(trips.lazy(), zones.lazy())
        out[month] = (features.height, model_input(features, columns))
    return out


def rows_under_course_filter(folder: Path) -> dict[str, int]:
    """Rows the project's normalized trips keep under the course's filter alone (1..60 minutes)."""
    counts = {}
    for month in MONTHS:
        name = month_file(month)
        trips = normalize_trips(pl.read_parquet(folder / name), taxi_type="green", source_name=name)
        counts[month] = trips.filter(
            duration_minutes().is_between(MIN_DURATION_MINUTES, MAX_DURATION_MINUTES)
        ).height
    return counts


def run(context: BenchContext) -> CaseResult:
    folder = tlc_files(context, MONTHS)
    result = CaseResult(
        case="features",
        title="feature preparation, green 2021-01 and 2021-02"
        + (" (tiny synthetic stand-ins)" if context.tiny else " (real TLC files)"),
        compared="the course's pandas preparation (apply, to_dict, DictVectorizer) and the "
        "project's polars path (normalize_trips, build_trip_features, model_input), "
        "each from the parquet files to the model's input",
        columns=["implementation", "rows Jan", "rows Feb", "median s", "runs s", "speed-up"],
    )
    reference_out = course_features(folder)
    project_out = project_features(folder)
    same_filter = rows_under_course_filter(folder)
    timings = interleaved_medians(
        {
            "course pandas": lambda: course_features(folder),
            "project polars": lambda: project_features(folder),
        },
        context.repeat,
    )
    reference_median = timings["course pandas"][0]
    for name, outputs in (("course pandas", reference_out), ("project polars", project_out)):
        median, runs = timings[name]
        result.rows.append(
            {
                "implementation": name,
                "rows Jan": outputs[MONTHS[0]][0],
                "rows Feb": outputs[MONTHS[1]][0],
                "median s": median,
                "runs s": " / ".join(f"{value:.2f}" for value in runs),
                "speed-up": ratio(reference_median, median),
            }
        )
    result.rows.append(
        {
            "implementation": "project, 1..60 min filter only",
            "rows Jan": same_filter[MONTHS[0]],
            "rows Feb": same_filter[MONTHS[1]],
        }
    )
    same_rows = all(same_filter[month] == reference_out[month][0] for month in MONTHS)
    speedup = ratio(reference_median, timings["project polars"][0])
    result.goals.append(
        Goal(
            f"project path at least {GOAL_SPEEDUP:.0f}x faster than the course's pandas",
            f"{speedup:.1f}x",
            speedup >= GOAL_SPEEDUP,
        )
    )
    result.goals.append(
        Goal(
            "same rows kept under the course's 1..60 minute filter",
            "identical counts"
            if same_rows
            else f"{same_filter} vs course "
            f"{ {month: reference_out[month][0] for month in MONTHS} }",
            same_rows,
        )
    )
    result.notes.append(
        "trip_features additionally drops trips over 100 miles and zone IDs outside 1..265 "
        "(the project's cleaning rules), hence its slightly lower row counts"
    )
    return result
