"""A backfill of `raw_trips` and `trip_features` as a plain polars script: the `backfill` yardstick.

Reads each month file once, normalizes it, and writes every day's raw trips and features as
parquet, one file per day, with no orchestration. Prints how long the work took after its imports
(`work_seconds=...`), the counterpart of a Dagster run's own duration.

    python bench/backfill_script.py CACHE_DIR ZONES.parquet OUTPUT_DIR FIRST_DAY LAST_DAY [--sample]
"""

import sys
import time
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from ml_assets.lib.features import trip_features_frame, trips_on_day
from ml_assets.lib.sample_source import sample_trips
from ml_assets.lib.trip_schema import normalize_trips


def main(
    cache_dir: Path, zones_file: Path, output: Path, first: date, last: date, sample: bool
) -> None:
    started = time.perf_counter()
    zones = pl.read_parquet(zones_file).lazy()
    months: dict[str, pl.DataFrame] = {}
    rows = 0
    day = first
    while day <= last:
        if sample:
            trips = sample_trips(day)
        else:
            name = f"green_tripdata_{day:%Y-%m}.parquet"
            if name not in months:
                months[name] = normalize_trips(
                    pl.read_parquet(cache_dir / name), taxi_type="green", source_name=name
                )
            trips = trips_on_day(months[name].lazy(), day).collect()
        features = trip_features_frame(trips.lazy(), zones)
        for folder, frame in (("raw_trips", trips), ("trip_features", features)):
            (output / folder).mkdir(parents=True, exist_ok=True)
            frame.write_parquet(output / folder / f"{day}.parquet")
        rows += features.height
        day += timedelta(days=1)
    print(f"{first}..{last}: {rows} feature rows")
    print(f"work_seconds={time.perf_counter() - started:.4f}")


if __name__ == "__main__":
    main(
        Path(sys.argv[1]),
        Path(sys.argv[2]),
        Path(sys.argv[3]),
        date.fromisoformat(sys.argv[4]),
        date.fromisoformat(sys.argv[5]),
        sample="--sample" in sys.argv[6:],
    )
