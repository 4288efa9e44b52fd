"""Every environment variable ml_assets reads, with its default, in one place.

Values are read when the code location loads (`dagster dev` reloads pick up changes). Nothing here
is a secret; secrets are passed to resources as `dg.EnvVar` so they are read only at run time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ml_assets.lib.tlc_client import TLC_TRIP_DATA_URL, TLC_ZONE_LOOKUP_URL


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

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def assets_dir(self) -> Path:
        return self.data_dir / "assets"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("ML_ASSETS_DATA_DIR", "data")).expanduser().resolve()
        source = env.get("ML_ASSETS_SOURCE", "tlc")
        if source not in ("tlc", "sample"):
            raise ValueError(f"ML_ASSETS_SOURCE={source!r}: expected 'tlc' or 'sample'")
        window = env.get("ML_ASSETS_TRAINING_WINDOW_DAYS", "28")
        if not window.isdigit() or not 1 <= int(window) <= 366:
            raise ValueError(
                f"ML_ASSETS_TRAINING_WINDOW_DAYS={window!r}: expected a whole number of days, 1..366"
            )
        tracking_uri = env.get("MLFLOW_TRACKING_URI")
        return cls(
            data_dir=data_dir,
            source=source,
            taxi_type=env.get("ML_ASSETS_TAXI_TYPE", "green"),
            tlc_base_url=env.get("ML_ASSETS_TLC_BASE_URL", TLC_TRIP_DATA_URL),
            tlc_zone_lookup_url=env.get("ML_ASSETS_TLC_ZONE_LOOKUP_URL", TLC_ZONE_LOOKUP_URL),
            start_date=env.get("ML_ASSETS_START_DATE", "2021-01-01"),
            training_window_days=int(window),
            # Four slashes: sqlite wants an absolute path after `sqlite:///`.
            mlflow_tracking_uri=tracking_uri or f"sqlite:///{data_dir / 'mlflow.db'}",
            mlflow_artifact_location=None if tracking_uri else str(data_dir / "mlartifacts"),
            mlflow_experiment=env.get("ML_ASSETS_MLFLOW_EXPERIMENT", "ml_assets"),
            mlflow_ui_url=env.get("ML_ASSETS_MLFLOW_UI_URL", "http://127.0.0.1:5000"),
            model_name=env.get("ML_ASSETS_MODEL_NAME", "nyc-taxi-trip-duration"),
            retrain_cron=_cron(env.get("ML_ASSETS_RETRAIN_CRON", "0 6 * * *")),
            ui_url=env.get("ML_ASSETS_UI_URL", "http://127.0.0.1:3000"),
            notify_configured=bool(env.get("ML_ASSETS_NOTIFY_URLS", "").strip()),
            rmse_regression_margin=_share(
                "ML_ASSETS_RMSE_REGRESSION_MARGIN",
                env.get("ML_ASSETS_RMSE_REGRESSION_MARGIN", "0.1"),
            ),
            rmse_trailing_days=_days(
                "ML_ASSETS_RMSE_TRAILING_DAYS", env.get("ML_ASSETS_RMSE_TRAILING_DAYS", "7")
            ),
        )


def _share(name: str, value: str) -> float:
    try:
        share = float(value)
    except ValueError:
        share = -1.0
    if not 0 <= share <= 10:
        raise ValueError(f"{name}={value!r}: expected a share such as 0.1 (10%), from 0 to 10")
    return share


def _days(name: str, value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 366:
        raise ValueError(f"{name}={value!r}: expected a whole number of days, 1..366")
    return int(value)


def _cron(value: str) -> str:
    # Five fields, each made of digits, `*`, `/`, `,` and `-`: enough to catch a typo early.
    fields = value.split()
    if len(fields) != 5 or not all(set(field) <= set("0123456789*/,-") for field in fields):
        raise ValueError(
            f"ML_ASSETS_RETRAIN_CRON={value!r}: expected a five-field cron expression "
            "such as '0 6 * * *' (every day at 06:00 UTC) or '0 6 * * 1' (Mondays)"
        )
    return value
