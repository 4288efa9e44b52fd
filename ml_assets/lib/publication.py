"""Noticing when TLC publishes (or re-publishes) a month file, without downloading it.

TLC publishes a month's trips weeks after it ends, and sometimes replaces a file later. A HEAD
request per watched month tells whether the file exists and which version it holds (ETag, or
Last-Modified and size). What was seen is kept as a small JSON mapping from `{taxi}/{YYYY-MM}`
to that version, so the same file is never reported twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, timedelta

from ml_assets.lib.month_cache import RemoteFileInfo
from ml_assets.lib.tlc_client import TLCClient
from ml_assets.lib.tlc_errors import MonthNotPublishedError, TLCError


def months_between(first: date, last: date) -> list[date]:
    """The first day of every month from `first`'s month to `last`'s month, inclusive."""
    months = []
    month = first.replace(day=1)
    while month <= last:
        months.append(month)
        # Day 28 plus four days is always in the next month.
        month = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    return months


def month_id(taxi_type: str, month: date) -> str:
    return f"{taxi_type}/{month:%Y-%m}"


def parse_seen(cursor: str | None) -> dict[str, str]:
    """The versions already seen, from a cursor written by `dump_seen` (None: nothing seen)."""
    if not cursor:
        return {}
    seen = json.loads(cursor)
    if not isinstance(seen, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in seen.items()
    ):
        raise ValueError(f"publication cursor {cursor!r}: expected a JSON object of strings")
    return seen


def dump_seen(seen: dict[str, str]) -> str:
    return json.dumps(seen, sort_keys=True)


@dataclass(frozen=True)
class Publication:
    """A month file that is new, or changed since it was last seen."""

    month: date
    remote: RemoteFileInfo
    previous_version: str | None

    @property
    def changed(self) -> bool:
        return self.previous_version is not None


@dataclass
class PublicationScan:
    """What one pass over the watched months found."""

    new_or_changed: list[Publication] = field(default_factory=list)
    unchanged: list[date] = field(default_factory=list)
    unpublished: list[date] = field(default_factory=list)
    error: str | None = None
    """Why the scan stopped early (source unreachable, unexpected answer); None if it finished."""

    def seen_after(self, seen: dict[str, str], taxi_type: str) -> dict[str, str]:
        """`seen` updated with the versions of the new and changed files."""
        return {
            **seen,
            **{
                month_id(taxi_type, found.month): found.remote.version
                for found in self.new_or_changed
            },
        }


def scan_publications(
    client: TLCClient, taxi_type: str, months: list[date], seen: dict[str, str]
) -> PublicationScan:
    """HEAD each month's file and sort the months into new/changed, unchanged and unpublished.

    Stops at the first failure that is not a 404 (a down or misbehaving source), keeping what it
    found before it, so one bad tick neither crashes nor forgets anything.
    """
    scan = PublicationScan()
    for month in months:
        try:
            remote = client.head_month(taxi_type, month)
        except MonthNotPublishedError:
            scan.unpublished.append(month)
            continue
        except TLCError as error:
            scan.error = str(error)
            break
        previous = seen.get(month_id(taxi_type, month))
        if previous == remote.version:
            scan.unchanged.append(month)
        else:
            scan.new_or_changed.append(Publication(month, remote, previous))
    return scan


def forget_outdated_cached_month(
    client: TLCClient, taxi_type: str, month: date, remote: RemoteFileInfo
) -> bool:
    """Drop the cached copy of `month` when the published file has another version.

    Versions are compared as `RemoteFileInfo.version`: the ETag when the source sends one, else
    Last-Modified and size, so a source without ETags invalidates the copy too. A copy cached
    before its sidecar recorded Last-Modified and size counts as outdated unless its ETag matches.
    Only the sidecar is removed: the next read downloads the file again and replaces the old copy
    atomically. Returns whether the cached copy was outdated.
    """
    cached = client.cache.get(taxi_type, month)
    if cached is None or cached.version == remote.version:
        return False
    client.cache.invalidate(taxi_type, month)
    return True
