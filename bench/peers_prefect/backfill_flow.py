"""The ingestion backfill in Prefect 3: the `backfill` case's work, written as a Prefect user does.

For every day of a range, a `raw_trips` task (the day's trips from the cached month file, written
as parquet) and a `trip_features` task (its features, written as parquet), mapped over the days
(`Task.map`, Prefect's fan-out, on its default thread pool task runner). Every task retries, is
cached on its inputs and source (`INPUTS + TASK_SOURCE`) and persists its result (a small record
of the file written) under `PREFECT_LOCAL_STORAGE_PATH`: a re-run over unchanged inputs takes
every result from the cache and writes nothing. Month files are passed with a stamp of their size
and modification time, so a changed file is a new input; each is read and normalized once per
process (a memo, as the project's own trip source keeps), not once per day.

Runs in the bench's Prefect environment (`bench/prefect_env.py`), never the project's:

    python bench/peers_prefect/backfill_flow.py CACHE_DIR ZONES.parquet OUTPUT_DIR FIRST LAST [--sample]

Prints `rows=N` (feature rows) and `cached=N` (task runs whose result came from the cache).
"""

import sys
import threading
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from prefect import flow, task, unmapped
from prefect.cache_policies import INPUTS, TASK_SOURCE

from ml_assets.lib.features import trip_features_frame, trips_on_day
from ml_assets.lib.sample_source import sample_trips
from ml_assets.lib.storage import atomic_write
from ml_assets.lib.trip_schema import normalize_trips

CACHED = INPUTS + TASK_SOURCE
RETRIES = {"retries": 3, "retry_delay_seconds": 2}

_MONTHS: dict[tuple[str, str], pl.DataFrame] = {}
_MONTHS_LOCK = threading.Lock()  # the mapped tasks run on threads


def file_stamp(path: Path) -> str:
    """Size and modification time: part of a task's inputs, so a changed file misses the cache."""
    stat = path.stat()
    return f"{stat.st_size}-{stat.st_mtime_ns}"


def normalized_month(month_file: Path, stamp: str) -> pl.DataFrame:
    """The month file, read and normalized once per process and stamp."""
    with _MONTHS_LOCK:
        key = (str(month_file), stamp)
        if key not in _MONTHS:
            _MONTHS[key] = normalize_trips(
                pl.read_parquet(month_file), taxi_type="green", source_name=month_file.name
            )
        return _MONTHS[key]


@task(cache_policy=CACHED, persist_result=True, **RETRIES)
def raw_trips(day: date, month_file: Path | None, month_stamp: str, output: Path) -> dict[str, Any]:
    """The trips picked up on `day`, normalized, written to `output/raw_trips/DAY.parquet`."""
    if month_file is None:
        trips = sample_trips(day)
    else:
        trips = trips_on_day(normalized_month(month_file, month_stamp).lazy(), day).collect()
    path = output / "raw_trips" / f"{day}.parquet"
    atomic_write(path, trips.write_parquet)
    return {"day": day.isoformat(), "path": str(path), "rows": trips.height, "source": month_stamp}


@task(cache_policy=CACHED, persist_result=True, **RETRIES)
def trip_features(
    raw: dict[str, Any], zones_file: Path, zones_stamp: str, output: Path
) -> dict[str, Any]:
    """The day's cleaned trips with the model's features, written to `output/trip_features/`."""
    trips = pl.read_parquet(raw["path"])
    zones = pl.read_parquet(zones_file)
    day_features = trip_features_frame(trips.lazy(), zones.lazy())
    path = output / "trip_features" / f"{raw['day']}.parquet"
    atomic_write(path, day_features.write_parquet)
    return {"day": raw["day"], "path": str(path), "rows": day_features.height}


@flow(name="ingestion-backfill")
def ingestion_backfill(
    cache_dir: Path, zones_file: Path, output: Path, first: date, last: date, sample: bool = False
) -> dict[str, int]:
    """Raw trips and features of every day from `first` to `last`, one file per day each."""
    days = [first + timedelta(days=offset) for offset in range((last - first).days + 1)]
    month_files = [
        None if sample else cache_dir / f"green_tripdata_{day:%Y-%m}.parquet" for day in days
    ]
    stamps = {path: file_stamp(path) for path in set(month_files) if path is not None}
    raw = raw_trips.map(
        days,
        month_files,
        [stamps.get(path, "sample") for path in month_files],
        unmapped(output),
    )
    features = trip_features.map(
        raw, unmapped(zones_file), unmapped(file_stamp(zones_file)), unmapped(output)
    )
    results = features.result()
    return {
        "rows": sum(result["rows"] for result in results),
        "cached": sum(future.state.name == "Cached" for future in [*raw, *features]),
    }


if __name__ == "__main__":
    summary = ingestion_backfill(
        Path(sys.argv[1]),
        Path(sys.argv[2]),
        Path(sys.argv[3]),
        date.fromisoformat(sys.argv[4]),
        date.fromisoformat(sys.argv[5]),
        sample="--sample" in sys.argv[6:],
    )
    print(f"rows={summary['rows']} cached={summary['cached']}")
