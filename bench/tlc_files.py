"""The month files a case reads: the real TLC files, or tiny synthetic stand-ins for smoke runs."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl

from bench.harness import BenchContext, require_tlc_files
from ml_assets.lib.sample_source import sample_raw_trips, sample_zones

ZONE_LOOKUP = "taxi_zone_lookup.csv"
TINY_DAYS_PER_MONTH = 3


def month_file(month: str) -> str:
    return f"green_tripdata_{month}.parquet"


def tlc_files(context: BenchContext, months: list[str]) -> Path:
    """A folder with `green_tripdata_{month}.parquet` for each month and the zone lookup.

    Real runs use the shared TLC files (the case is skipped when they are absent); tiny runs write
    the first days of each month from the synthetic sample source, in TLC's raw layout.
    """
    if not context.tiny:
        return require_tlc_files(*(month_file(month) for month in months), ZONE_LOOKUP)
    folder = context.work_dir / "tiny_tlc"
    folder.mkdir(parents=True, exist_ok=True)
    for month in months:
        path = folder / month_file(month)
        if path.exists():
            continue
        first = date.fromisoformat(f"{month}-01")
        days = [first + timedelta(days=offset) for offset in range(TINY_DAYS_PER_MONTH)]
        pl.concat([sample_raw_trips(day) for day in days]).write_parquet(path)
    lookup = folder / ZONE_LOOKUP
    if not lookup.exists():
        sample_zones().write_csv(lookup)
    return folder
