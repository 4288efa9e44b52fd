"""A client for the NYC TLC trip record files, keeping checked months in a local cache.

TLC publishes one parquet file per taxi type and month at
`{base_url}/{taxi_type}_tripdata_{YYYY-MM}.parquet`, weeks after the month ends. A month is
downloaded once, checked (readable parquet, rows in the trip schema) before it goes into the cache
(`ml_assets.lib.month_cache`), and then read by every day of that month.

The cache is trusted only as far as it is valid: a cached month whose content no longer passes the
checks is dropped (`reject_cached_month`), so the next read downloads it again. A month can also be
fetched again on request (`fetch_month(..., refetch=True)`), or when the source publishes another
version of it (`revalidate=True`); the old copy is replaced only by a new one that passed the
checks.

Requests go through `ml_assets.lib.tlc_http` (timeouts, a total deadline, retries of what may
pass); what can go wrong is in `ml_assets.lib.tlc_errors`.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path
from typing import TypeVar

import polars as pl
import requests

from ml_assets.lib.month_cache import CachedMonth, MonthCache, RemoteFileInfo, month_file_name
from ml_assets.lib.month_files import read_month_trips, validate_parquet
from ml_assets.lib.tlc_errors import (
    CorruptFileError,
    MonthNotPublishedError,
    RequestRejectedError,
    TLCError,
)
from ml_assets.lib.tlc_http import (
    DEFAULT_CONNECT_TIMEOUT_SECONDS,
    DEFAULT_DEADLINE_SECONDS,
    DEFAULT_READ_TIMEOUT_SECONDS,
    HttpLimits,
    TLCHttp,
    with_note,
)
from ml_assets.lib.trip_schema import TripSchemaError
from ml_assets.lib.zones import parse_zone_lookup

TLC_TRIP_DATA_URL = "https://d37ci6vzurychx.cloudfront.net/trip-data"
TLC_ZONE_LOOKUP_URL = "https://d37ci6vzurychx.cloudfront.net/misc/taxi_zone_lookup.csv"


T = TypeVar("T")


class TLCClient:
    """Downloads TLC trip files and the zone lookup, caching months on local disk."""

    def __init__(
        self,
        cache_dir: Path,
        *,
        base_url: str = TLC_TRIP_DATA_URL,
        zone_lookup_url: str = TLC_ZONE_LOOKUP_URL,
        connect_timeout_seconds: float = DEFAULT_CONNECT_TIMEOUT_SECONDS,
        read_timeout_seconds: float = DEFAULT_READ_TIMEOUT_SECONDS,
        deadline_seconds: float = DEFAULT_DEADLINE_SECONDS,
        max_attempts: int = 3,
        backoff_seconds: float = 1.0,
        session: requests.Session | None = None,
    ) -> None:
        self.cache = MonthCache(cache_dir)
        self.base_url = base_url.rstrip("/")
        self.zone_lookup_url = zone_lookup_url
        self.http = TLCHttp(
            HttpLimits(
                connect_timeout_seconds=connect_timeout_seconds,
                read_timeout_seconds=read_timeout_seconds,
                deadline_seconds=deadline_seconds,
                max_attempts=max_attempts,
                backoff_seconds=backoff_seconds,
            ),
            session,
        )

    def month_url(self, taxi_type: str, month: date) -> str:
        return f"{self.base_url}/{month_file_name(taxi_type, month)}"

    def fetch_month(
        self, taxi_type: str, month: date, *, refetch: bool = False, revalidate: bool = False
    ) -> CachedMonth:
        """The month's file from the cache, downloading it first if it is not there.

        `refetch=True` downloads it again even when a copy is cached. `revalidate=True` asks the
        source (one HEAD request) which version it publishes and downloads it again when that is
        not the cached copy's version (a replaced or repaired file); when the source cannot be
        asked, the cached copy is used. A download is checked (readable parquet, rows in the trip
        schema, trips of its month) before it is renamed into the cache: a file that fails leaves
        the cache as it was (the previous copy, if any, is kept) and raises `CorruptFileError` or
        `TripSchemaError` naming the file.
        """
        if not refetch:
            cached = self.cache.get(taxi_type, month)
            if cached is not None and not (revalidate and self._outdated(cached, taxi_type, month)):
                return cached
        path = self.cache.path(taxi_type, month)
        url = self.month_url(taxi_type, month)
        remote: RemoteFileInfo | None = None
        trips: pl.DataFrame | None = None

        def receive(temp: Path, response: requests.Response, deadline: float) -> None:
            nonlocal remote
            remote = RemoteFileInfo.from_headers(url, response.headers)
            self.http.receive_body(url, temp, response, deadline)

        def download(temp: Path) -> RemoteFileInfo:
            nonlocal trips
            self.http.request(
                "GET",
                url,
                stream=True,
                consume=lambda response, deadline: receive(temp, response, deadline),
            )
            assert remote is not None
            validate_parquet(temp, url)
            try:
                # Named after the cached file, not the temp file: errors and trip keys say it.
                trips = read_month_trips(
                    temp, taxi_type=taxi_type, source_name=path.name, month=month
                )
            except (TripSchemaError, CorruptFileError) as error:
                kept = "; the cached copy is kept" if refetch and path.exists() else ""
                with_note(error, f" (downloaded from {url}, not cached{kept})")
                raise
            return remote

        return dataclasses.replace(self.cache.put(taxi_type, month, download), trips=trips)

    def _outdated(self, cached: CachedMonth, taxi_type: str, month: date) -> bool:
        """Whether the source now publishes another version of `month` than the cached copy."""
        try:
            # Asked once: a source that is down must not hold up a run that has a checked copy.
            published = self.head_month(taxi_type, month, max_attempts=1)
        except TLCError:
            return False  # unreachable or unpublished now: the checked copy is still the best
        return published.version != cached.version

    def reject_cached_month(self, taxi_type: str, month: date, error: T) -> T:
        """Drop the cached copy of `month` because reading it raised `error`; return the error.

        The message says the copy was dropped, so the person reading it knows that the next run
        downloads the file again (once the source is fixed, it simply succeeds). It is amended in
        place, so a bare `raise` in the handler re-raises it with its traceback.
        """
        path = self.cache.path(taxi_type, month)
        if self.cache.drop(taxi_type, month):
            note = (
                f"; the cached copy {path} was dropped, so the next run downloads "
                f"{self.month_url(taxi_type, month)} again"
            )
        else:
            note = f"; no cached copy is left at {path}"
        return with_note(error, note)

    def head_month(
        self, taxi_type: str, month: date, *, max_attempts: int | None = None
    ) -> RemoteFileInfo:
        """Ask the source whether the month is published and which version it holds."""
        url = self.month_url(taxi_type, month)
        response = self.http.request("HEAD", url, max_attempts=max_attempts)
        return RemoteFileInfo.from_headers(url, response.headers)

    def read_zones(self) -> pl.DataFrame:
        """The taxi zone lookup (LocationID, Borough, Zone, service_zone), validated."""
        try:
            response = self.http.request("GET", self.zone_lookup_url)
        except MonthNotPublishedError as error:
            raise RequestRejectedError(
                f"{self.zone_lookup_url} does not exist (HTTP 404): check "
                "ML_ASSETS_TLC_ZONE_LOOKUP_URL"
            ) from error
        return parse_zone_lookup(response.content, source_name=self.zone_lookup_url)
