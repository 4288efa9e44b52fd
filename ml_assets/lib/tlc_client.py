"""A client for the NYC TLC trip record files, with a local month cache.

TLC publishes one parquet file per taxi type and month at
`{base_url}/{taxi_type}_tripdata_{YYYY-MM}.parquet`, weeks after the month ends. A month is
downloaded once, validated as parquet, written atomically into the cache and then read by every
day of that month.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl
import requests

from ml_assets.lib.storage import atomic_write
from ml_assets.lib.trip_schema import TAXI_TYPES, normalize_zones

TLC_TRIP_DATA_URL = "https://d37ci6vzurychx.cloudfront.net/trip-data"
TLC_ZONE_LOOKUP_URL = "https://d37ci6vzurychx.cloudfront.net/misc/taxi_zone_lookup.csv"

TRANSIENT_STATUS_CODES = frozenset({408, 425, 429, 500, 502, 503, 504})


class TLCError(RuntimeError):
    """Base class for errors talking to the TLC source."""


class MonthNotPublishedError(TLCError):
    """TLC answered 404: the month's file does not exist (yet)."""


class TransientTLCError(TLCError):
    """The source failed in a way that may pass (timeouts, connection resets, 5xx, 429)."""


class CorruptFileError(TLCError):
    """The file arrived but is not a readable parquet file (truncated or not parquet at all)."""


@dataclass(frozen=True)
class RemoteFileInfo:
    """What a HEAD request tells about a published file; enough to see that it changed."""

    url: str
    etag: str | None
    last_modified: str | None
    content_length: int | None

    @property
    def version(self) -> str:
        """A short string that changes whenever the published file changes."""
        return self.etag or f"{self.last_modified}|{self.content_length}"


@dataclass(frozen=True)
class CachedMonth:
    """A month file in the local cache."""

    path: Path
    url: str
    sha256: str
    etag: str | None
    downloaded: bool
    """True when this call downloaded the file, False on a cache hit."""


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
        timeout_seconds: float = 60.0,
        max_attempts: int = 3,
        backoff_seconds: float = 1.0,
        session: requests.Session | None = None,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.base_url = base_url.rstrip("/")
        self.zone_lookup_url = zone_lookup_url
        self.timeout_seconds = timeout_seconds
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.session = session or requests.Session()

    def month_url(self, taxi_type: str, month: date) -> str:
        return f"{self.base_url}/{month_file_name(taxi_type, month)}"

    def cached_path(self, taxi_type: str, month: date) -> Path:
        return self.cache_dir / month_file_name(taxi_type, month)

    def fetch_month(self, taxi_type: str, month: date) -> CachedMonth:
        """Return the month's file from the cache, downloading it first if it is not there."""
        path = self.cached_path(taxi_type, month)
        url = self.month_url(taxi_type, month)
        sidecar = path.with_suffix(".json")
        if path.exists() and sidecar.exists():
            info = json.loads(sidecar.read_text())
            return CachedMonth(path, url, info["sha256"], info.get("etag"), downloaded=False)

        etag: str | None = None

        def receive(temp: Path, response: requests.Response) -> None:
            nonlocal etag
            etag = response.headers.get("ETag")
            expected = response.headers.get("Content-Length")
            try:
                with temp.open("wb") as handle:
                    for chunk in response.iter_content(chunk_size=1 << 20):
                        handle.write(chunk)
            except (
                requests.exceptions.ChunkedEncodingError,
                requests.ConnectionError,
                requests.Timeout,
            ) as error:
                # The body was cut short or stalled: worth another attempt.
                raise TransientTLCError(
                    f"GET {url}: the transfer broke after {temp.stat().st_size} of "
                    f"{expected or 'unknown'} bytes ({error})"
                ) from error
            if expected is not None and temp.stat().st_size != int(expected):
                raise TransientTLCError(
                    f"GET {url}: received {temp.stat().st_size} bytes, expected {expected}"
                )

        def download(temp: Path) -> None:
            self._request("GET", url, stream=True, consume=lambda response: receive(temp, response))
            _validate_parquet(temp, url)

        atomic_write(path, download)
        digest = sha256_of(path)
        atomic_write(
            sidecar,
            lambda temp: temp.write_text(json.dumps({"url": url, "sha256": digest, "etag": etag})),
        )
        return CachedMonth(path, url, digest, etag, downloaded=True)

    def head_month(self, taxi_type: str, month: date) -> RemoteFileInfo:
        """Ask the source whether the month is published and which version it holds."""
        url = self.month_url(taxi_type, month)
        response = self._request("HEAD", url)
        length = response.headers.get("Content-Length")
        return RemoteFileInfo(
            url=url,
            etag=response.headers.get("ETag"),
            last_modified=response.headers.get("Last-Modified"),
            content_length=int(length) if length is not None else None,
        )

    def read_zones(self) -> pl.DataFrame:
        """The taxi zone lookup (LocationID, Borough, Zone, service_zone)."""
        try:
            response = self._request("GET", self.zone_lookup_url)
        except MonthNotPublishedError as error:
            raise TLCError(
                f"{self.zone_lookup_url} does not exist (HTTP 404): check "
                "ML_ASSETS_TLC_ZONE_LOOKUP_URL"
            ) from error
        raw = pl.read_csv(response.content, infer_schema_length=0)
        return normalize_zones(raw, source_name=self.zone_lookup_url)

    def _request(
        self,
        method: str,
        url: str,
        *,
        stream: bool = False,
        consume: Callable[[requests.Response], object] | None = None,
    ) -> requests.Response:
        """One HTTP request, retried with exponential backoff and jitter while errors are transient.

        `consume` reads a streamed body inside the same attempt, so a transfer cut short
        (raising `TransientTLCError`) is retried like a failed request.
        """
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self._send(method, url, stream=stream)
                if consume is not None:
                    with response:
                        consume(response)
                return response
            except TransientTLCError:
                if attempt == self.max_attempts:
                    raise
            delay = self.backoff_seconds * 2 ** (attempt - 1)
            time.sleep(delay + random.uniform(0, delay / 2))
        raise AssertionError("unreachable")

    def _send(self, method: str, url: str, *, stream: bool) -> requests.Response:
        try:
            response = self.session.request(
                method, url, timeout=self.timeout_seconds, stream=stream
            )
        except (requests.ConnectionError, requests.Timeout) as error:
            raise TransientTLCError(f"{method} {url} failed: {error}") from error
        if response.status_code == 404:
            raise MonthNotPublishedError(
                f"{url} does not exist (HTTP 404): TLC has not published this file yet, "
                "or the taxi type or month is wrong"
            )
        if response.status_code in TRANSIENT_STATUS_CODES:
            raise TransientTLCError(
                f"{method} {url} answered HTTP {response.status_code} {response.reason}"
            )
        if response.status_code >= 400:
            raise TLCError(f"{method} {url} answered HTTP {response.status_code} {response.reason}")
        return response


def _validate_parquet(path: Path, url: str) -> None:
    try:
        # The row count comes from the footer: a truncated file has none to read.
        rows = pl.scan_parquet(path).select(pl.len()).collect().item()
    except Exception as error:
        raise CorruptFileError(
            f"{url}: the downloaded file is not a readable parquet file ({error}); "
            "it may be truncated"
        ) from error
    if rows == 0:
        raise CorruptFileError(f"{url}: the parquet file holds no rows")
