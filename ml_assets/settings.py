"""Every environment variable ml_assets reads, with its default, in one place.

Values are read and checked when the code location loads (`dagster dev` reloads pick up changes):
an invalid value stops the load with a `SettingsError`, one line naming the variable, the value and
what is accepted. A variable set to an empty string counts as unset. Nothing here is a secret;
secrets are passed to resources as `dg.EnvVar` so they are read only at run time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from ml_assets.lib.tlc_client import TLC_TRIP_DATA_URL, TLC_ZONE_LOOKUP_URL
from ml_assets.lib.trip_schema import TAXI_TYPES

SOURCES = ("tlc", "sample")
"""`ML_ASSETS_SOURCE`: the real TLC files over HTTP, or offline synthetic trips."""

EXECUTORS = ("multiprocess", "in_process", "celery")
"""`ML_ASSETS_EXECUTOR`: which executor runs the steps of every job (see `ml_assets.executors`)."""

DEFAULT_CELERY_BROKER = "amqp://guest:guest@127.0.0.1:5672//"
DEFAULT_CELERY_BACKEND = "rpc://"
DEFAULT_CELERY_QUEUE = "dagster"

_T = TypeVar("_T")


class SettingsError(ValueError):
    """An environment variable holds a value ml_assets cannot use.

    Its message is one line: `NAME='value': expected ...`. Passwords inside URLs are masked.
    """


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    source: str
    taxi_type: str
    tlc_base_url: str
    tlc_zone_lookup_url: str
    start_date: str
    training_window_days: int
    mlflow_tracking_uri: str
    mlflow_artifact_location: str | None
    mlflow_experiment: str
    mlflow_ui_url: str
    model_name: str
    retrain_cron: str = "0 6 * * *"
    """When `training_job` trains the model of the day before (cron, UTC)."""
    ui_url: str = "http://127.0.0.1:3000"
    """Base URL of the Dagster UI, for the run links in alerts."""
    notify_configured: bool = False
    """Whether ML_ASSETS_NOTIFY_URLS is set; its value (it holds secrets) is read only at run time."""
    rmse_regression_margin: float = 0.1
    """Alert when a day's evaluation RMSE exceeds the trailing mean by more than this share."""
    rmse_trailing_days: int = 7
    """How many earlier evaluated days the trailing mean RMSE covers."""
    executor: str = "multiprocess"
    """Which executor runs the steps of every job: one of `EXECUTORS`."""
    # Broker and backend URLs may hold a password: kept out of the repr.
    celery_broker: str = field(default=DEFAULT_CELERY_BROKER, repr=False)
    """Where the Celery executor sends steps (RabbitMQ or Redis URL)."""
    celery_backend: str = field(default=DEFAULT_CELERY_BACKEND, repr=False)
    """Where Celery workers send results back (`rpc://`: over the broker)."""
    celery_queue: str = DEFAULT_CELERY_QUEUE
    """The Celery queue the workers listen on."""
    queued_alert_minutes: float = 60.0
    """Announce a run waiting in the queue longer than this."""
    pool_wait_alert_minutes: float = 60.0
    """Announce a step waiting on a concurrency pool (such as `training`) longer than this."""
    tlc_connect_timeout_seconds: float = 10.0
    """How long a request to the TLC host waits for a connection, per attempt."""
    tlc_read_timeout_seconds: float = 30.0
    """How long a request to the TLC host waits for the next bytes of an answer, per attempt."""
    tlc_deadline_seconds: float = 300.0
    """The total time of one request to the TLC host, every attempt and wait included."""
    mlflow_deadline_seconds: float = 30.0
    """How long a step waits for the MLflow tracking server to answer before it fails."""

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def assets_dir(self) -> Path:
        return self.data_dir / "assets"

    def in_force(self) -> dict[str, str]:
        """The settings that decide what a run reads and where it writes, by variable name.

        Logged at the start of every run, so a user sees which values won (environment or
        `.env`). Passwords in the MLflow tracking URI are masked.
        """
        return {
            "ML_ASSETS_SOURCE": self.source,
            "ML_ASSETS_TAXI_TYPE": self.taxi_type,
            "ML_ASSETS_DATA_DIR": str(self.data_dir),
            "MLFLOW_TRACKING_URI": redact_url(self.mlflow_tracking_uri),
            "ML_ASSETS_EXECUTOR": self.executor,
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings of `environ` (default: the process environment), every value checked.

        Raises `SettingsError` for the first invalid value, naming the variable, the value and
        what is accepted.
        """
        env = _Environment(os.environ if environ is None else environ)
        data_dir = env.read("ML_ASSETS_DATA_DIR", "data", _directory)
        tracking_uri = env.get("MLFLOW_TRACKING_URI")
        return cls(
            data_dir=data_dir,
            source=env.read("ML_ASSETS_SOURCE", "tlc", _one_of(SOURCES)),
            taxi_type=env.read("ML_ASSETS_TAXI_TYPE", "green", _one_of(TAXI_TYPES)),
            tlc_base_url=env.read("ML_ASSETS_TLC_BASE_URL", TLC_TRIP_DATA_URL, _http_url),
            tlc_zone_lookup_url=env.read(
                "ML_ASSETS_TLC_ZONE_LOOKUP_URL", TLC_ZONE_LOOKUP_URL, _http_url
            ),
            start_date=env.read("ML_ASSETS_START_DATE", "2021-01-01", _iso_date),
            training_window_days=env.read("ML_ASSETS_TRAINING_WINDOW_DAYS", "28", _days),
            # Four slashes: sqlite wants an absolute path after `sqlite:///`.
            mlflow_tracking_uri=tracking_uri or f"sqlite:///{data_dir / 'mlflow.db'}",
            mlflow_artifact_location=None if tracking_uri else str(data_dir / "mlartifacts"),
            mlflow_experiment=env.read(
                "ML_ASSETS_MLFLOW_EXPERIMENT", "ml_assets", _experiment_name
            ),
            mlflow_ui_url=env.read("ML_ASSETS_MLFLOW_UI_URL", "http://127.0.0.1:5000", _http_url),
            model_name=env.read("ML_ASSETS_MODEL_NAME", "nyc-taxi-trip-duration", _model_name),
            retrain_cron=env.read("ML_ASSETS_RETRAIN_CRON", "0 6 * * *", _cron),
            ui_url=env.read("ML_ASSETS_UI_URL", "http://127.0.0.1:3000", _http_url),
            notify_configured=env.get("ML_ASSETS_NOTIFY_URLS") is not None,
            rmse_regression_margin=env.read("ML_ASSETS_RMSE_REGRESSION_MARGIN", "0.1", _share),
            rmse_trailing_days=env.read("ML_ASSETS_RMSE_TRAILING_DAYS", "7", _days),
            executor=env.read("ML_ASSETS_EXECUTOR", "multiprocess", _one_of(EXECUTORS)),
            celery_broker=env.read("ML_ASSETS_CELERY_BROKER", DEFAULT_CELERY_BROKER, _any_url),
            celery_backend=env.read("ML_ASSETS_CELERY_BACKEND", DEFAULT_CELERY_BACKEND, _any_url),
            celery_queue=env.read("ML_ASSETS_CELERY_QUEUE", DEFAULT_CELERY_QUEUE, _queue_name),
            queued_alert_minutes=env.read("ML_ASSETS_QUEUED_ALERT_MINUTES", "60", _positive),
            pool_wait_alert_minutes=env.read("ML_ASSETS_POOL_WAIT_ALERT_MINUTES", "60", _positive),
            tlc_connect_timeout_seconds=env.read(
                "ML_ASSETS_TLC_CONNECT_TIMEOUT_SECONDS", "10", _positive
            ),
            tlc_read_timeout_seconds=env.read(
                "ML_ASSETS_TLC_READ_TIMEOUT_SECONDS", "30", _positive
            ),
            tlc_deadline_seconds=env.read("ML_ASSETS_TLC_DEADLINE_SECONDS", "300", _positive),
            mlflow_deadline_seconds=env.read("ML_ASSETS_MLFLOW_DEADLINE_SECONDS", "30", _positive),
        )


class _Environment:
    """Reads variables, treating an empty value as unset, and turns a check's complaint into a
    `SettingsError` naming the variable and its (password-masked) value."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def get(self, name: str) -> str | None:
        value = self._environ.get(name)
        return value if value is not None and value.strip() else None

    def read(self, name: str, default: str, check: Callable[[str], _T]) -> _T:
        value = self.get(name)
        try:
            return check(default if value is None else value)
        except ValueError as complaint:
            shown = redact_url(value if value is not None else default)
            raise SettingsError(f"{name}={shown!r}: {complaint}") from None


def redact_url(url: str) -> str:
    """`url` with the password of its user part (`scheme://user:password@host`) masked as `***`."""
    # A pattern, not urlsplit: it also masks the password of a URL too malformed to parse.
    return _PASSWORD.sub(r"\1:***@", url)


_PASSWORD = re.compile(r"^(\w[\w+.-]*:/*[^:/@\s]*):[^/\s]*@")


def _one_of(accepted: tuple[str, ...]) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in accepted:
            raise ValueError(f"expected one of {', '.join(accepted)}")
        return value

    return check


def _directory(value: str) -> Path:
    path = Path(value).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ValueError("expected a directory (or where one may be created), but it is a file")
    return path


def _http_url(value: str) -> str:
    expected = "expected an http:// or https:// URL such as http://127.0.0.1:8000"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - parsing the port is what rejects `host:abc`
    except ValueError:
        raise ValueError(expected) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or " " in value:
        raise ValueError(expected)
    return value


def _any_url(value: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9+.-]*://\S*", value):
        raise ValueError("expected a URL such as redis://127.0.0.1:6379/0 or amqp://host:5672//")
    return value


def _queue_name(value: str) -> str:
    if not re.fullmatch(r"[\w.:-]+", value):
        raise ValueError("expected a queue name of letters, digits, '.', ':', '_' and '-'")
    return value


def _iso_date(value: str) -> str:
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            datetime.strptime(value, "%Y-%m-%d")
            return value
    except ValueError:
        pass
    raise ValueError("expected a calendar date as YYYY-MM-DD, such as 2021-01-01")


def _days(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 366:
        raise ValueError("expected a whole number of days, 1..366")
    return int(value)


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    # NaN and infinity fail too.
    if not 0 < number < float("inf"):
        raise ValueError("expected a positive number, such as 60")
    return number


def _share(value: str) -> float:
    try:
        share = float(value)
    except ValueError:
        share = -1.0
    # NaN fails both comparisons, so it is refused too.
    if not 0 <= share <= 10:
        raise ValueError("expected a share such as 0.1 (10%), from 0 to 10")
    return share


def _experiment_name(value: str) -> str:
    # MLflow's own limit; checked here so a long name fails at load, not in the first MLflow step.
    if len(value) > 500:
        raise ValueError("expected an MLflow experiment name of at most 500 characters")
    return value


def _model_name(value: str) -> str:
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


def _cron(value: str) -> str:
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
