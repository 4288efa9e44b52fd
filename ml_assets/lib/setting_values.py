"""Reading setting values: each check turns the text of a variable into a value, or raises a
`ValueError` saying what is accepted. Plain code; `ml_assets.settings` names the variable.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit


def redact_url(url: str) -> str:
    """`url` with the password of its user part (`scheme://user:password@host`) masked as `***`."""
    # A pattern, not urlsplit: it also masks the password of a URL too malformed to parse.
    return _PASSWORD.sub(r"\1:***@", url)


_PASSWORD = re.compile(r"^(\w[\w+.-]*:/*[^:/@\s]*):[^/\s]*@")


def one_of(accepted: tuple[str, ...]) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in accepted:
            raise ValueError(f"expected one of {', '.join(accepted)}")
        return value

    return check


def directory(value: str) -> Path:
    path = Path(value).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ValueError("expected a directory (or where one may be created), but it is a file")
    return path


def http_url(value: str) -> str:
    expected = "expected an http:// or https:// URL such as http://127.0.0.1:8000"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - parsing the port is what rejects `host:abc`
    except ValueError:
        raise ValueError(expected) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or " " in value:
        raise ValueError(expected)
    return value


def any_url(value: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9+.-]*://\S*", value):
        raise ValueError("expected a URL such as redis://127.0.0.1:6379/0 or amqp://host:5672//")
    return value


def queue_name(value: str) -> str:
    if not re.fullmatch(r"[\w.:-]+", value):
        raise ValueError("expected a queue name of letters, digits, '.', ':', '_' and '-'")
    return value


def iso_date(value: str) -> str:
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            datetime.strptime(value, "%Y-%m-%d")
            return value
    except ValueError:
        pass
    raise ValueError("expected a calendar date as YYYY-MM-DD, such as 2021-01-01")


def last_day_from(start_date: str) -> Callable[[str], str]:
    """A check of a last day: a calendar date not before `start_date`."""

    def last_day(value: str) -> str:
        if iso_date(value) < start_date:
            raise ValueError(f"expected a day on or after ML_ASSETS_START_DATE ({start_date})")
        return value

    return last_day


def time_of_day(value: str) -> str:
    if re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        return value
    raise ValueError("expected a time of day as HH:MM (24-hour, UTC), such as 08:00")


def days(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 366:
        raise ValueError("expected a whole number of days, 1..366")
    return int(value)


def positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    # NaN and infinity fail too.
    if not 0 < number < float("inf"):
        raise ValueError("expected a positive number, such as 60")
    return number


def share(value: str) -> float:
    try:
        share = float(value)
    except ValueError:
        share = -1.0
    # NaN fails both comparisons, so it is refused too.
    if not 0 <= share <= 10:
        raise ValueError("expected a share such as 0.1 (10%), from 0 to 10")
    return share


def margin(value: str) -> float:
    try:
        share = float(value)
    except ValueError:
        share = -1.0
    # NaN fails both comparisons, so it is refused too.
    if not 0 <= share < 1:
        raise ValueError("expected a share from 0 to below 1, such as 0.02 (2 % lower RMSE)")
    return share


def experiment_name(value: str) -> str:
    # MLflow's own limit; checked here so a long name fails at load, not in the first MLflow step.
    if len(value) > 500:
        raise ValueError("expected an MLflow experiment name of at most 500 characters")
    return value


def model_name(value: str) -> str:
    # MLflow refuses these when the first model version is registered, after a day of work.
    if (
        any(char in value for char in "/:")
        or value.strip() in (".", "..")
        or value != value.strip()
    ):
        raise ValueError(
            "expected an MLflow model name without '/' or ':' and without surrounding spaces"
        )
    return value


_CRON_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    (
        "month",
        1,
        12,
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
    ),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)

_CRON_EXPECTED = (
    "expected a five-field cron expression such as '0 6 * * *' (every day at 06:00 UTC) "
    "or '0 6 * * 1' (Mondays)"
)


def cron(value: str) -> str:
    fields = value.split()
    if len(fields) != len(_CRON_FIELDS):
        raise ValueError(_CRON_EXPECTED)
    for text, (what, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for item in text.split(","):
            if not _cron_item(item, low, high, names):
                raise ValueError(f"{_CRON_EXPECTED}; {what} {item!r} is not valid ({low}..{high})")
    return value


def _cron_item(item: str, low: int, high: int, names: tuple[str, ...]) -> bool:
    """One comma-separated part of a cron field: `*`, `n`, `n-m`, each optionally `/step`."""
    span, _, step = item.partition("/")
    if step and not (step.isdigit() and int(step) >= 1):
        return False
    if span == "*":
        return True
    bounds = span.split("-")
    if len(bounds) > 2:
        return False
    numbers = []
    for bound in bounds:
        if bound.lower() in names:
            numbers.append(names.index(bound.lower()) + (1 if low == 1 else 0))
        elif bound.isdigit():
            numbers.append(int(bound))
        else:
            return False
    return all(low <= number <= high for number in numbers) and numbers == sorted(numbers)
