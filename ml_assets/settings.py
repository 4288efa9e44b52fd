"""Every environment variable ml_assets reads, with its default, in one place.

Values are read and checked when the code location loads (`dagster dev` reloads pick up changes):
an invalid value stops the load with a `SettingsError`, one line naming the variable, the value and
what is accepted. A variable set to an empty string counts as unset. Nothing here is a secret;
secrets are passed to resources as `dg.EnvVar` so they are read only at run time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from ml_assets.lib import setting_values as values
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
    promotion_margin: float = 0.0
    """How much lower (a share) the challenger's RMSE must be than the champion's to promote it."""
    promotion_approval: str = "auto"
    """`auto`: a challenger passing the gate becomes champion; `manual`: a candidate to approve."""
    catch_up_days: int = 35
    """How many of the newest days `catch_up_sensor` fills when they are missing."""
    freshness_deadline: str = "08:00"
    """The time (HH:MM, UTC) of day D+1 by which day D's raw trips and predictions must exist."""
    summary_configured: bool = False
    """Whether ML_ASSETS_SUMMARY_URLS is set; its value (it holds secrets) is read only when sent."""
    end_date: str | None = None
    """The last daily partition (a historical run, such as the demo's week); None: up to today."""

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
            "MLFLOW_TRACKING_URI": values.redact_url(self.mlflow_tracking_uri),
            "ML_ASSETS_EXECUTOR": self.executor,
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings of `environ` (default: the process environment), every value checked.

        Raises `SettingsError` for the first invalid value, naming the variable, the value and
        what is accepted.
        """
        env = _Environment(os.environ if environ is None else environ)
        data_dir = env.read("ML_ASSETS_DATA_DIR", "data", values.directory)
        start_date = env.read("ML_ASSETS_START_DATE", "2021-01-01", values.iso_date)
        tracking_uri = env.get("MLFLOW_TRACKING_URI")
        return cls(
            data_dir=data_dir,
            source=env.read("ML_ASSETS_SOURCE", "tlc", values.one_of(SOURCES)),
            taxi_type=env.read("ML_ASSETS_TAXI_TYPE", "green", values.one_of(TAXI_TYPES)),
            tlc_base_url=env.read("ML_ASSETS_TLC_BASE_URL", TLC_TRIP_DATA_URL, values.http_url),
            tlc_zone_lookup_url=env.read(
                "ML_ASSETS_TLC_ZONE_LOOKUP_URL", TLC_ZONE_LOOKUP_URL, values.http_url
            ),
            start_date=start_date,
            end_date=env.read_optional("ML_ASSETS_END_DATE", values.last_day_from(start_date)),
            training_window_days=env.read("ML_ASSETS_TRAINING_WINDOW_DAYS", "28", values.days),
            # Four slashes: sqlite wants an absolute path after `sqlite:///`.
            mlflow_tracking_uri=tracking_uri or f"sqlite:///{data_dir / 'mlflow.db'}",
            mlflow_artifact_location=None if tracking_uri else str(data_dir / "mlartifacts"),
            mlflow_experiment=env.read(
                "ML_ASSETS_MLFLOW_EXPERIMENT", "ml_assets", values.experiment_name
            ),
            mlflow_ui_url=env.read(
                "ML_ASSETS_MLFLOW_UI_URL", "http://127.0.0.1:5000", values.http_url
            ),
            model_name=env.read(
                "ML_ASSETS_MODEL_NAME", "nyc-taxi-trip-duration", values.model_name
            ),
            retrain_cron=env.read("ML_ASSETS_RETRAIN_CRON", "0 6 * * *", values.cron),
            ui_url=env.read("ML_ASSETS_UI_URL", "http://127.0.0.1:3000", values.http_url),
            notify_configured=env.get("ML_ASSETS_NOTIFY_URLS") is not None,
            rmse_regression_margin=env.read(
                "ML_ASSETS_RMSE_REGRESSION_MARGIN", "0.1", values.share
            ),
            rmse_trailing_days=env.read("ML_ASSETS_RMSE_TRAILING_DAYS", "7", values.days),
            executor=env.read("ML_ASSETS_EXECUTOR", "multiprocess", values.one_of(EXECUTORS)),
            celery_broker=env.read(
                "ML_ASSETS_CELERY_BROKER", DEFAULT_CELERY_BROKER, values.any_url
            ),
            celery_backend=env.read(
                "ML_ASSETS_CELERY_BACKEND", DEFAULT_CELERY_BACKEND, values.any_url
            ),
            celery_queue=env.read(
                "ML_ASSETS_CELERY_QUEUE", DEFAULT_CELERY_QUEUE, values.queue_name
            ),
            queued_alert_minutes=env.read("ML_ASSETS_QUEUED_ALERT_MINUTES", "60", values.positive),
            pool_wait_alert_minutes=env.read(
                "ML_ASSETS_POOL_WAIT_ALERT_MINUTES", "60", values.positive
            ),
            tlc_connect_timeout_seconds=env.read(
                "ML_ASSETS_TLC_CONNECT_TIMEOUT_SECONDS", "10", values.positive
            ),
            tlc_read_timeout_seconds=env.read(
                "ML_ASSETS_TLC_READ_TIMEOUT_SECONDS", "30", values.positive
            ),
            tlc_deadline_seconds=env.read("ML_ASSETS_TLC_DEADLINE_SECONDS", "300", values.positive),
            mlflow_deadline_seconds=env.read(
                "ML_ASSETS_MLFLOW_DEADLINE_SECONDS", "30", values.positive
            ),
            promotion_margin=env.read("ML_ASSETS_PROMOTION_MARGIN", "0", values.margin),
            promotion_approval=env.read(
                "ML_ASSETS_PROMOTION_APPROVAL", "auto", values.one_of(("auto", "manual"))
            ),
            catch_up_days=env.read("ML_ASSETS_CATCH_UP_DAYS", "35", values.days),
            freshness_deadline=env.read(
                "ML_ASSETS_FRESHNESS_DEADLINE", "08:00", values.time_of_day
            ),
            summary_configured=env.get("ML_ASSETS_SUMMARY_URLS") is not None,
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
            shown = values.redact_url(value if value is not None else default)
            raise SettingsError(f"{name}={shown!r}: {complaint}") from None

    def read_optional(self, name: str, check: Callable[[str], _T]) -> _T | None:
        """`read` for a variable without a default: None when unset."""
        if self.get(name) is None:
            return None
        return self.read(name, "", check)
