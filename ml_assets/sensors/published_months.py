"""Which TLC months are published, for the sensors that wait for them (catch-up, freshness, the
daily summary): HEAD requests, remembered in the calling sensor's cursor for a while.
"""

from __future__ import annotations

import calendar
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta

from ml_assets.lib.month_cache import month_file_name
from ml_assets.lib.tlc_errors import MonthNotPublishedError, TLCError
from ml_assets.resources.trip_source import TripSource

UNPUBLISHED_RECHECK = timedelta(hours=1)
PUBLISHED_RECHECK = timedelta(hours=24)


def last_day_of_month(month: date) -> date:
    return month.replace(day=calendar.monthrange(month.year, month.month)[1])


class PublishedMonths:
    """Whether TLC has published a month's file, asked with a HEAD request and remembered for a
    while (a month not published is asked again after an hour, a published one after a day).

    `state` is JSON kept in the calling sensor's cursor. With the sample source every month counts
    as published and nothing is asked.
    """

    def __init__(self, trip_source: TripSource, state: Mapping[str, object], now: datetime):
        self._source = trip_source
        self._now = now
        self.state: dict[str, list[object]] = {
            str(key): list(value)  # type: ignore[call-overload]
            for key, value in state.items()
            if isinstance(value, list) and len(value) == 2
        }
        self.errors: list[str] = []

    def file_name(self, month: date) -> str:
        return month_file_name(self._source.taxi_type, month)

    def published(self, month: date) -> bool:
        if self._source.synthetic:
            return True
        key = f"{self._source.taxi_type}/{month:%Y-%m}"
        known = self.state.get(key)
        if known is not None:
            published, checked = bool(known[0]), datetime.fromtimestamp(float(known[1]), UTC)  # type: ignore[arg-type]
            if self._now - checked < (PUBLISHED_RECHECK if published else UNPUBLISHED_RECHECK):
                return published
        try:
            self._source.client().head_month(self._source.taxi_type, month)
            published = True
        except MonthNotPublishedError:
            published = False
        except TLCError as error:
            # Unknown for now: asked again next tick; counts as not published meanwhile.
            self.errors.append(f"could not check {self.file_name(month)}: {error}")
            return bool(known and known[0])
        self.state[key] = [published, self._now.timestamp()]
        return published

    def newest_available_day(self, today: date, months_back: int = 4) -> date | None:
        """The newest day whose trips can exist: yesterday, or with TLC the last day of the newest
        published month (TLC publishes weeks after a month ends), looking `months_back` months
        back at most. None if none of those months is published."""
        yesterday = today - timedelta(days=1)
        month = yesterday.replace(day=1)
        for _ in range(months_back + 1):
            if self.published(month):
                return min(yesterday, last_day_of_month(month))
            month = (month - timedelta(days=1)).replace(day=1)
        return None


def load_cursor(cursor: str | None) -> dict[str, object]:
    """A sensor's JSON cursor as a dict (empty when unset or of another format)."""
    if not cursor:
        return {}
    try:
        value = json.loads(cursor)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
