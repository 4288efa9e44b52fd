"""Case `scale`: synthetic months of 1M, 5M and 10M trips through raw, features and training.

Each month is generated beforehand in TLC's raw green layout (trips of the synthetic sample source,
drawn with replacement and spread over the month's days) and written as parquet. Then, for each
size, one fresh process runs what the assets run: `normalize_trips` (raw_trips),
`build_trip_features` (trip_features) and `train_model(ModelParams())` on every row, as
duration_model holds them (`training_rows`: no trip key, text as categories). The process reports
each stage's time; its peak resident memory (native memory included) comes from the operating
system when it exits. The smallest size runs first and again after each larger size, and a larger
size is compared with the smallest runs on either side of it: the baseline is measured beside
what it is compared with, not minutes earlier on a machine that may have changed since.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from bench.harness import BenchContext, CaseResult, Goal, gib, python_child, ratio

SIZES = (1_000_000, 5_000_000, 10_000_000)
TINY_SIZES = (20_000, 40_000)
GOAL_PEAK_GIB = 4.0
LINEAR_TOLERANCE = 1.25
"""Time per trip at the largest size may exceed the smallest's by this factor and still count as
linear (fixed costs make small sizes relatively slower, caches make large ones slower)."""
MONTH = date(2021, 1, 1)

GENERATE = """
import sys
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl

from ml_assets.lib.sample_source import sample_raw_trips

trips, path = int(sys.argv[1]), sys.argv[2]
month = date.fromisoformat(sys.argv[3])
days_in_month = 31
pool = pl.concat([sample_raw_trips(month + timedelta(days=d)) for d in range(28)])
rng = np.random.default_rng(trips)
picked = pool[rng.integers(0, pool.height, size=trips)]
day = pl.Series("day", rng.integers(0, days_in_month, size=trips))
pickup, dropoff = pl.col("lpep_pickup_datetime"), pl.col("lpep_dropoff_datetime")
new_pickup = (
    pl.lit(datetime(month.year, month.month, 1))
    + pl.duration(days=day)
    + (pickup - pickup.dt.truncate("1d"))
)
# Trips are drawn with replacement: a column of their own keeps every drawn trip a distinct trip
# (trip keys digest the whole source row), as every trip of a real file is.
picked.with_columns(
    new_pickup.alias("lpep_pickup_datetime"), (new_pickup + (dropoff - pickup)).alias("lpep_dropoff_datetime")
).with_row_index("synthetic_trip").sort("lpep_pickup_datetime").write_parquet(path)
"""

PIPELINE = """
import json
import sys
import time

import polars as pl

from ml_assets.lib.day_model import training_rows
from ml_assets.lib.features import trip_features_frame
from ml_assets.lib.model import ModelParams, train_model
from ml_assets.lib.sample_source import sample_zones
from ml_assets.lib.trip_schema import normalize_trips

path = sys.argv[1]
zones = sample_zones()
cpu_started = time.process_time()
started = time.perf_counter()
trips = normalize_trips(pl.read_parquet(path), taxi_type="green", source_name="synthetic month")
raw_done = time.perf_counter()
features = trip_features_frame(trips.lazy(), zones.lazy())
del trips
features_done = time.perf_counter()
feature_rows = features.height
# What duration_model reads of the trip_features files and holds in memory.
training = training_rows(features)
del features
model = train_model(training, ModelParams())
trained = time.perf_counter()
print(json.dumps({
    "cpu_s": time.process_time() - cpu_started,
    "raw_s": raw_done - started,
    "features_s": features_done - raw_done,
    "train_s": trained - features_done,
    "fit_s": model.fit_seconds,
    "feature_rows": feature_rows,
}))
"""


def run(context: BenchContext) -> CaseResult:
    sizes = TINY_SIZES if context.tiny else SIZES
    result = CaseResult(
        case="scale",
        title="synthetic months of "
        + ", ".join(f"{size:,}" for size in sizes)
        + " trips through raw, features and training",
        compared="wall time of each stage, CPU time and peak memory of one process per size; "
        "CPU time per million trips against the smallest size's runs just before and after it "
        "(CPU time, unlike wall time, does not grow when other work shares the machine)",
        columns=[
            "trips",
            "feature rows",
            "raw s",
            "features s",
            "training s",
            "total s",
            "CPU s",
            "CPU s per M trips",
            "vs smallest",
            "peak GiB",
        ],
    )
    folder = context.work_dir / "scale"
    folder.mkdir(parents=True, exist_ok=True)
    smallest = sizes[0]
    # The smallest size runs again after each larger one: a larger size is compared with the
    # mean of the smallest runs just before and after it, so a machine that gets quicker or
    # slower during the case does not read as growth (the smallest size's CPU time per trip
    # has varied by a fifth between runs on this shared machine).
    order = [smallest]
    for size in sizes[1:]:
        order += [size, smallest]
    measured = [_measure(folder, size) for size in order]
    smallest_per_million = [one.cpu_per_million for one in measured if one.size == smallest]
    growth_by_size: dict[int, float] = {}
    for position, size_run in enumerate(measured):
        if size_run.size == smallest:
            against = statistics.mean(smallest_per_million)
        else:
            before, after = measured[position - 1], measured[position + 1]
            against = statistics.mean([before.cpu_per_million, after.cpu_per_million])
            growth_by_size[size_run.size] = ratio(size_run.cpu_per_million, against)
        stages = size_run.stages
        result.rows.append(
            {
                "trips": size_run.size,
                "feature rows": stages["feature_rows"],
                "raw s": stages["raw_s"],
                "features s": stages["features_s"],
                "training s": stages["train_s"],
                "total s": stages["raw_s"] + stages["features_s"] + stages["train_s"],
                "CPU s": stages["cpu_s"],
                "CPU s per M trips": size_run.cpu_per_million,
                "vs smallest": ratio(size_run.cpu_per_million, against),
                "peak GiB": size_run.peak_gib,
            }
        )
    largest = sizes[-1]
    growth = growth_by_size[largest]
    peak_largest = next(one.peak_gib for one in measured if one.size == largest)
    result.goals += [
        Goal(
            f"time grows linearly (CPU time per trip at {sizes[-1]:,} within "
            f"{LINEAR_TOLERANCE}x of {sizes[0]:,})",
            f"{growth:.2f}x",
            growth <= LINEAR_TOLERANCE,
        ),
        Goal(
            f"peak memory at {sizes[-1]:,} trips under {GOAL_PEAK_GIB:.0f} GiB",
            f"{peak_largest:.2f} GiB",
            peak_largest < GOAL_PEAK_GIB,
        ),
    ]
    result.notes.append(
        "training fits on every row with the project's default parameters (one thread); CPU "
        "time is the three stages' (all threads); peak resident memory is the whole process's, "
        "interpreter and imports included, as the operating system reports it"
    )
    result.notes.append(
        f"runs in this order: {', '.join(f'{size:,}' for size in order)}; `vs smallest` of a "
        f"larger size is its CPU time per trip against the mean of the {smallest:,}-trip runs "
        f"just before and after it; of a {smallest:,}-trip run, against the mean of all "
        f"{len(smallest_per_million)} ({', '.join(f'{value:.2f}' for value in smallest_per_million)} "
        "s per million trips)"
    )
    return result


@dataclass(frozen=True)
class _SizeRun:
    """One fresh process's figures for a synthetic month of `size` trips."""

    size: int
    stages: dict[str, float]
    peak_gib: float

    @property
    def cpu_per_million(self) -> float:
        return self.stages["cpu_s"] / (self.size / 1e6)


def _measure(folder: Path, size: int) -> _SizeRun:
    """One fresh process through raw, features and training on a synthetic month of `size`
    trips (generated once)."""
    path = folder / f"green_tripdata_synthetic_{size}.parquet"
    if not path.exists():
        python_child(
            "import sys; sys.argv = ['generate', "
            f"'{size}', {str(path)!r}, '{MONTH.isoformat()}']\n" + GENERATE
        ).check(f"generating {size:,} trips")
    child = python_child(f"import sys; sys.argv = ['pipeline', {str(path)!r}]\n" + PIPELINE).check(
        f"raw, features and training on {size:,} trips"
    )
    stages = json.loads(child.stdout.strip().splitlines()[-1])
    return _SizeRun(size, stages, gib(child.peak_rss_bytes))
