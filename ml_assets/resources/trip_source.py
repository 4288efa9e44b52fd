"""Where trips come from: NYC TLC over HTTP (cached per month), or the offline synthetic sample."""

import functools
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Literal

import dagster as dg
import polars as pl
from pydantic import Field

from ml_assets.lib.features import trips_on_day
from ml_assets.lib.tlc_client import TLC_TRIP_DATA_URL, TLC_ZONE_LOOKUP_URL, TLCClient
from ml_assets.lib.trip_schema import normalize_trips


def _sample_source() -> ModuleType:
    # Imported when first used: the generator needs numpy, which a code location reading TLC
    # files never does, and every Dagster process loads the code location.
    from ml_assets.lib import sample_source

    return sample_source


@dataclass(frozen=True)
class DayOfTrips:
    """One day's trips and where they came from."""

    trips: pl.DataFrame
    source_description: str
    source_version: str
    """Changes when the data behind the day changes (file checksum, or the generator's version)."""
    synthetic: bool
    downloaded: bool


class TripSource(dg.ConfigurableResource):
    """The source of trip records and the taxi zone lookup.

    `tlc` downloads NYC TLC's monthly parquet files once into a local cache and reads each day
    from there; `sample` generates deterministic synthetic trips in the TLC schema, with no network.
    """

    source: Literal["tlc", "sample"] = Field(
        default="tlc",
        description="`tlc` for the real NYC TLC files, `sample` for offline synthetic trips.",
    )
    taxi_type: Literal["green", "yellow"] = Field(
        default="green", description="Which TLC fleet's trip files to read."
    )
    base_url: str = Field(
        default=TLC_TRIP_DATA_URL,
        description="Where `{taxi_type}_tripdata_{YYYY-MM}.parquet` files are published.",
    )
    zone_lookup_url: str = Field(
        default=TLC_ZONE_LOOKUP_URL, description="URL of TLC's taxi_zone_lookup.csv."
    )
    cache_dir: str = Field(description="Local folder where downloaded month files are kept.")
    max_attempts: int = Field(
        default=3, description="HTTP attempts per request before a transient error is raised."
    )
    backoff_seconds: float = Field(
        default=1.0, description="First retry delay; doubles with each attempt, plus jitter."
    )

    @property
    def synthetic(self) -> bool:
        return self.source == "sample"

    def client(self) -> TLCClient:
        return TLCClient(
            Path(self.cache_dir),
            base_url=self.base_url,
            zone_lookup_url=self.zone_lookup_url,
            max_attempts=self.max_attempts,
            backoff_seconds=self.backoff_seconds,
        )

    def trips_for_day(self, day: date, taxi_type: str | None = None) -> DayOfTrips:
        """The trips picked up on `day`, in the normalized schema."""
        taxi_type = taxi_type or self.taxi_type
        if self.synthetic:
            sample = _sample_source()
            return DayOfTrips(
                trips=sample.sample_trips(day, taxi_type),
                source_description=(
                    f"synthetic sample ({taxi_type}, generator v{sample.SAMPLE_VERSION})"
                ),
                source_version=f"sample-v{sample.SAMPLE_VERSION}",
                synthetic=True,
                downloaded=False,
            )
        client = self.client()
        cached = client.fetch_month(taxi_type, day.replace(day=1))
        month = _read_normalized_month(str(cached.path), cached.sha256, taxi_type)
        return DayOfTrips(
            trips=trips_on_day(month.lazy(), day).collect(),
            source_description=cached.url,
            source_version=cached.sha256,
            synthetic=False,
            downloaded=cached.downloaded,
        )

    def source_version_for_day(self, day: date, taxi_type: str | None = None) -> str:
        """What `DayOfTrips.source_version` of `day` will be, without reading any trips.

        For TLC this is the checksum of the cached month file (downloaded first if needed): the
        cache check of `raw_trips` costs a small sidecar read per day, not a parquet read.
        """
        taxi_type = taxi_type or self.taxi_type
        if self.synthetic:
            return f"sample-v{_sample_source().SAMPLE_VERSION}"
        return self.client().fetch_month(taxi_type, day.replace(day=1)).sha256

    def zones(self) -> tuple[pl.DataFrame, str]:
        """The zone lookup and a description of where it came from."""
        if self.synthetic:
            sample = _sample_source()
            return (
                sample.sample_zones(),
                f"synthetic sample zones (generator v{sample.SAMPLE_VERSION})",
            )
        return self.client().read_zones(), self.zone_lookup_url


@functools.lru_cache(maxsize=2)
def _read_normalized_month(path: str, sha256: str, taxi_type: str) -> pl.DataFrame:
    """A month file normalized once per process, so a backfill does not re-read it for every day.

    `sha256` is part of the cache key so a replaced file is read again.
    """
    return normalize_trips(pl.read_parquet(path), taxi_type=taxi_type, source_name=Path(path).name)
