"""The local cache of checked TLC month files, each with a JSON sidecar saying what it is.

A month file is `{cache_dir}/{taxi_type}_tripdata_{YYYY-MM}.parquet`; beside it a sidecar
`....json` records the URL it came from, its checksum and the version the source reported (ETag,
Last-Modified, size). Only a file with a readable sidecar counts as cached: the sidecar is written
after the file and removed before it, so a crash in between leaves a file that is downloaded
again, never a file described by another file's checksum.

What goes into the cache was checked first (see `ml_assets.lib.tlc_client`, which downloads and
revalidates); this module only keeps files and sidecars consistent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from ml_assets.lib.storage import atomic_write
from ml_assets.lib.trip_schema import TAXI_TYPES


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


class MonthCache:
    """Month files and their sidecars under `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, taxi_type: str, month: date) -> Path:
        return self.directory / month_file_name(taxi_type, month)

    def sidecar_path(self, taxi_type: str, month: date) -> Path:
        """The JSON beside a cached month: its URL, checksum and the source's version of it."""
        return self.path(taxi_type, month).with_suffix(".json")

    def get(self, taxi_type: str, month: date) -> CachedMonth | None:
        """The cached copy of `month` (one small sidecar read), or None if there is none.

        A month file without its sidecar, or with a sidecar that cannot be read, is not a cached
        copy: it is downloaded again (and replaced atomically).
        """
        path = self.path(taxi_type, month)
        try:
            info = json.loads(self.sidecar_path(taxi_type, month).read_text())
            url, sha256 = info["url"], info["sha256"]
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None
        if not path.exists():
            return None
        return CachedMonth(
            path,
            url,
            sha256,
            info.get("etag"),
            downloaded=False,
            last_modified=info.get("last_modified"),
            size=info.get("size"),
        )

    def put(
        self, taxi_type: str, month: date, download: Callable[[Path], RemoteFileInfo]
    ) -> CachedMonth:
        """Cache `month`: `download(temp)` writes the file to `temp`, checks it and returns what
        the source said of it. A `download` that raises leaves the cache as it was."""
        path = self.path(taxi_type, month)
        sidecar = self.sidecar_path(taxi_type, month)
        remote: RemoteFileInfo | None = None

        def write(temp: Path) -> None:
            nonlocal remote
            remote = download(temp)
            # The old sidecar goes before the new file replaces the old one: a crash in between
            # leaves a file without a sidecar, which is downloaded again, never a new file
            # described by the old checksum.
            sidecar.unlink(missing_ok=True)

        atomic_write(path, write)
        assert remote is not None
        cached = CachedMonth(
            path,
            remote.url,
            sha256_of(path),
            remote.etag,
            downloaded=True,
            last_modified=remote.last_modified,
            size=path.stat().st_size,
        )
        record = {
            "url": cached.url,
            "sha256": cached.sha256,
            "etag": cached.etag,
            "last_modified": cached.last_modified,
            "size": cached.size,
        }
        atomic_write(sidecar, lambda temp: temp.write_text(json.dumps(record)))
        return cached

    def invalidate(self, taxi_type: str, month: date) -> None:
        """Stop trusting the cached copy of `month`: the next read downloads it again.

        Only the sidecar goes; the file stays until a new download replaces it atomically.
        """
        self.sidecar_path(taxi_type, month).unlink(missing_ok=True)

    def drop(self, taxi_type: str, month: date) -> bool:
        """Remove the cached copy of `month` (file and sidecar); True if there was anything."""
        sidecar = self.sidecar_path(taxi_type, month)
        path = self.path(taxi_type, month)
        existed = sidecar.exists() or path.exists()
        # Sidecar first: a file without a sidecar is never used.
        sidecar.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        return existed
