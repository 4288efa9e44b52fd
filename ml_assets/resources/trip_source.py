"""Where trips come from: NYC TLC over HTTP (cached per month), or the offline synthetic sample."""

from collections import OrderedDict
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Literal

import dagster as dg
import polars as pl
from pydantic import Field

from ml_assets.lib.features import trips_on_day
from ml_assets.lib.month_cache import CachedMonth
from ml_assets.lib.month_files import read_month_trips
from ml_assets.lib.tlc_client import TLC_TRIP_DATA_URL, TLC_ZONE_LOOKUP_URL, TLCClient
from ml_assets.lib.tlc_errors import CorruptFileError
from ml_assets.lib.tlc_http import (
    DEFAULT_CONNECT_TIMEOUT_SECONDS,
    DEFAULT_DEADLINE_SECONDS,
    DEFAULT_READ_TIMEOUT_SECONDS,
)
from ml_assets.lib.trip_schema import TripSchemaError


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
        default=3,
        ge=1,
        description="HTTP attempts per request before a transient error is raised.",
    )
    backoff_seconds: float = Field(
        default=1.0,
        ge=0,
        description="First retry delay; doubles with each attempt, plus up to half of it at random.",
    )
    connect_timeout_seconds: float = Field(
        default=DEFAULT_CONNECT_TIMEOUT_SECONDS,
        gt=0,
        description="Seconds to wait for a connection to the TLC host, per attempt.",
    )
    read_timeout_seconds: float = Field(
        default=DEFAULT_READ_TIMEOUT_SECONDS,
        gt=0,
        description=(
            "Seconds to wait for the next bytes of an answer (its headers, or the next part of "
            "a download), per attempt."
        ),
    )
    deadline_seconds: float = Field(
        default=DEFAULT_DEADLINE_SECONDS,
        gt=0,
        description=(
            "Seconds one request may take in total, its attempts and the waits between them "
            "included; then it fails naming the URL and this deadline."
        ),
    )

    @property
    def synthetic(self) -> bool:
        return self.source == "sample"

    def client(self) -> TLCClient:
        return TLCClient(
            Path(self.cache_dir),
            base_url=self.base_url,
            zone_lookup_url=self.zone_lookup_url,
            connect_timeout_seconds=self.connect_timeout_seconds,
            read_timeout_seconds=self.read_timeout_seconds,
            deadline_seconds=self.deadline_seconds,
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
        month = day.replace(day=1)
        cached = client.fetch_month(taxi_type, month)
        try:
            trips = trips_on_day(_normalized_month(cached, taxi_type).lazy(), day).collect()
        except (TripSchemaError, CorruptFileError) as error:
            # The cached copy is not valid (any more): drop it, from disk and from this
            # process's memo, so the next attempt downloads the month again.
            _MONTHS.forget(cached.path)
            client.reject_cached_month(taxi_type, month, error)
            raise
        return DayOfTrips(
            trips=trips,
            source_description=cached.url,
            source_version=cached.sha256,
            synthetic=False,
            downloaded=cached.downloaded,
        )

    def source_version_for_day(
        self, day: date, taxi_type: str | None = None, *, refetch: bool = False
    ) -> str:
        """What `DayOfTrips.source_version` of `day` will be, without reading any trips.

        For TLC this is the checksum of the cached month file (downloaded and checked first if
        needed): the cache check of `raw_trips` costs a small sidecar read per day, not a parquet
        read. `refetch=True` downloads the month again even if it is cached; the cached copy is
        replaced only by a new file that passed the checks.
        """
        taxi_type = taxi_type or self.taxi_type
        if self.synthetic:
            return f"sample-v{_sample_source().SAMPLE_VERSION}"
        # One HEAD per month and run: a file TLC replaced or repaired since it was cached is
        # downloaded again, even when the publication sensor is off.
        cached = self.client().fetch_month(
            taxi_type, day.replace(day=1), refetch=refetch, revalidate=True
        )
        if cached.trips is not None:
            # Just downloaded and checked: the days of this run need not read it again.
            _MONTHS.put(cached, taxi_type, cached.trips)
        return cached.sha256

    def zones(self) -> tuple[pl.DataFrame, str]:
        """The zone lookup and a description of where it came from."""
        if self.synthetic:
            sample = _sample_source()
            return (
                sample.sample_zones(),
                f"synthetic sample zones (generator v{sample.SAMPLE_VERSION})",
            )
        return self.client().read_zones(), self.zone_lookup_url


class _MonthMemo:
    """The last few normalized month files of this process, so a backfill reads each once.

    Keyed by path, checksum and taxi type, so a replaced file is read again; a month whose cached
    copy was dropped as invalid is forgotten, so it is never served from here either.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._frames: OrderedDict[tuple[str, str, str], pl.DataFrame] = OrderedDict()

    def get(self, cached: CachedMonth, taxi_type: str) -> pl.DataFrame | None:
        key = (str(cached.path), cached.sha256, taxi_type)
        frame = self._frames.get(key)
        if frame is not None:
            self._frames.move_to_end(key)
        return frame

    def put(self, cached: CachedMonth, taxi_type: str, frame: pl.DataFrame) -> None:
        self._frames[(str(cached.path), cached.sha256, taxi_type)] = frame
        while len(self._frames) > self._size:
            self._frames.popitem(last=False)

    def forget(self, path: Path) -> None:
        for key in [key for key in self._frames if key[0] == str(path)]:
            del self._frames[key]


_MONTHS = _MonthMemo(size=2)


def _normalized_month(cached: CachedMonth, taxi_type: str) -> pl.DataFrame:
    """The month file normalized, read once per process (see `_MonthMemo`)."""
    frame = cached.trips if cached.trips is not None else _MONTHS.get(cached, taxi_type)
    if frame is None:
        frame = read_month_trips(
            cached.path,
            taxi_type=taxi_type,
            source_name=cached.path.name,
            month=_month_of(cached.path.name),
        )
    _MONTHS.put(cached, taxi_type, frame)
    return frame


def _month_of(file_name: str) -> date:
    """The month a TLC file is named after (`{taxi}_tripdata_YYYY-MM.parquet`)."""
    return date.fromisoformat(file_name.rsplit("_", 1)[1].removesuffix(".parquet") + "-01")
