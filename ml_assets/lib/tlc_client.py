"""A client for the NYC TLC trip record files, with a local month cache.

TLC publishes one parquet file per taxi type and month at
`{base_url}/{taxi_type}_tripdata_{YYYY-MM}.parquet`, weeks after the month ends. A month is
downloaded once, checked (readable parquet, rows in the trip schema) before it is renamed into the
cache, and then read by every day of that month. Beside each cached month a small JSON sidecar
records its checksum and the version the source reported (ETag, Last-Modified, size).

The cache is trusted only as far as it is valid: a cached month whose content no longer passes the
checks is dropped (`reject_cached_month`), so the next read downloads it again. A month can also be
fetched again on request (`fetch_month(..., refetch=True)`); the old copy is replaced only by a new
one that passed the checks.

Requests go through `ml_assets.lib.tlc_http` (timeouts, a total deadline, retries of what may
pass); what can go wrong is in `ml_assets.lib.tlc_errors`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TypeVar

import polars as pl
import requests

from ml_assets.lib.month_files import read_month_trips, validate_parquet
from ml_assets.lib.storage import atomic_write
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
from ml_assets.lib.trip_schema import TAXI_TYPES, TripSchemaError
from ml_assets.lib.zones import parse_zone_lookup

TLC_TRIP_DATA_URL = "https://d37ci6vzurychx.cloudfront.net/trip-data"
TLC_ZONE_LOOKUP_URL = "https://d37ci6vzurychx.cloudfront.net/misc/taxi_zone_lookup.csv"


T = TypeVar("T")


@dataclass(frozen=True)
class RemoteFileInfo:
    """What the source tells about a published file; enough to see that it changed."""

    url: str
    etag: str | None
    last_modified: str | None
    content_length: int | None

    @property
    def version(self) -> str:
        """A short string that changes whenever the published file changes.

        The ETag when the source sends one, else its Last-Modified date and size. This is the one
        notion of a file's version: the publication sensor's cursor and the cache sidecars use it.
        """
        return self.etag or f"{self.last_modified}|{self.content_length}"

    @classmethod
    def from_headers(cls, url: str, headers: Mapping[str, str]) -> RemoteFileInfo:
        length = headers.get("Content-Length")
        return cls(
            url=url,
            # An empty header is no validator at all.
            etag=headers.get("ETag") or None,
            last_modified=headers.get("Last-Modified") or None,
            content_length=int(length) if length and length.isdigit() else None,
        )


@dataclass(frozen=True)
class CachedMonth:
    """A month file in the local cache."""

    path: Path
    url: str
    sha256: str
    etag: str | None
    downloaded: bool
    """True when this call downloaded the file, False on a cache hit."""
    last_modified: str | None = None
    size: int | None = None
    trips: pl.DataFrame | None = field(default=None, compare=False, repr=False)
    """The month's normalized trips when this call downloaded (and so checked) the file."""

    @property
    def version(self) -> str:
        """The source's version of the file when it was downloaded (see `RemoteFileInfo.version`)."""
        return RemoteFileInfo(self.url, self.etag, self.last_modified, self.size).version


def month_file_name(taxi_type: str, month: date) -> str:
    if taxi_type not in TAXI_TYPES:
        raise ValueError(
            f"unknown taxi type {taxi_type!r}: expected one of {', '.join(TAXI_TYPES)}"
        )
    return f"{taxi_type}_tripdata_{month:%Y-%m}.parquet"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        self.cache_dir = Path(cache_dir)
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

    def cached_path(self, taxi_type: str, month: date) -> Path:
        return self.cache_dir / month_file_name(taxi_type, month)

    def sidecar_path(self, taxi_type: str, month: date) -> Path:
        """The JSON beside a cached month: its checksum and the source's version of it."""
        return self.cached_path(taxi_type, month).with_suffix(".json")

    def cached_month(self, taxi_type: str, month: date) -> CachedMonth | None:
        """The cached copy of `month` (one small sidecar read), or None if there is none.

        A month file without its sidecar, or with a sidecar that cannot be read, is not a cached
        copy: it is downloaded again (and replaced atomically).
        """
        path = self.cached_path(taxi_type, month)
        try:
            info = json.loads(self.sidecar_path(taxi_type, month).read_text())
            sha256 = info["sha256"]
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None
        if not path.exists():
            return None
        return CachedMonth(
            path,
            info.get("url") or self.month_url(taxi_type, month),
            sha256,
            info.get("etag"),
            downloaded=False,
            last_modified=info.get("last_modified"),
            size=info.get("size"),
        )

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
            cached = self.cached_month(taxi_type, month)
            if cached is not None and not (revalidate and self._outdated(cached, taxi_type, month)):
                return cached
        path = self.cached_path(taxi_type, month)
        sidecar = self.sidecar_path(taxi_type, month)
        url = self.month_url(taxi_type, month)
        remote: RemoteFileInfo | None = None
        trips: pl.DataFrame | None = None

        def receive(temp: Path, response: requests.Response, deadline: float) -> None:
            nonlocal remote
            remote = RemoteFileInfo.from_headers(url, response.headers)
            self.http.receive_body(url, temp, response, deadline)

        def download(temp: Path) -> None:
            nonlocal trips
            self.http.request(
                "GET",
                url,
                stream=True,
                consume=lambda response, deadline: receive(temp, response, deadline),
            )
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
            # The old sidecar goes before the new file replaces the old one: a crash in between
            # leaves a file without a sidecar, which is downloaded again, never a new file
            # described by the old checksum.
            sidecar.unlink(missing_ok=True)

        atomic_write(path, download)
        assert remote is not None
        digest = sha256_of(path)
        atomic_write(
            sidecar,
            lambda temp: temp.write_text(
                json.dumps(
                    {
                        "url": url,
                        "sha256": digest,
                        "etag": remote.etag,
                        "last_modified": remote.last_modified,
                        "size": path.stat().st_size,
                    }
                )
            ),
        )
        return CachedMonth(
            path,
            url,
            digest,
            remote.etag,
            downloaded=True,
            last_modified=remote.last_modified,
            size=path.stat().st_size,
            trips=trips,
        )

    def _outdated(self, cached: CachedMonth, taxi_type: str, month: date) -> bool:
        """Whether the source now publishes another version of `month` than the cached copy."""
        try:
            # Asked once: a source that is down must not hold up a run that has a checked copy.
            published = self.head_month(taxi_type, month, max_attempts=1)
        except TLCError:
            return False  # unreachable or unpublished now: the checked copy is still the best
        return published.version != cached.version

    def drop_cached_month(self, taxi_type: str, month: date) -> bool:
        """Remove the cached copy of `month` (file and sidecar); True if there was anything."""
        sidecar = self.sidecar_path(taxi_type, month)
        path = self.cached_path(taxi_type, month)
        existed = sidecar.exists() or path.exists()
        # Sidecar first: a file without a sidecar is never used.
        sidecar.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        return existed

    def reject_cached_month(self, taxi_type: str, month: date, error: T) -> T:
        """Drop the cached copy of `month` because reading it raised `error`; return the error.

        The message says the copy was dropped, so the person reading it knows that the next run
        downloads the file again (once the source is fixed, it simply succeeds). It is amended in
        place, so a bare `raise` in the handler re-raises it with its traceback.
        """
        path = self.cached_path(taxi_type, month)
        if self.drop_cached_month(taxi_type, month):
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
