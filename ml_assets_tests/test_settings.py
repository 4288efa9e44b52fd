"""Settings read from the environment: defaults, overrides and clear errors."""

from pathlib import Path

import pytest

from ml_assets.lib.tlc_client import TLC_TRIP_DATA_URL, TLC_ZONE_LOOKUP_URL
from ml_assets.resources import build_resources
from ml_assets.settings import Settings


def test_defaults_need_no_environment_and_keep_everything_under_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    settings = Settings.from_env({})

    assert settings.data_dir == tmp_path.resolve() / "data"
    assert settings.assets_dir == settings.data_dir / "assets"
    assert settings.cache_dir == settings.data_dir / "cache"
    assert settings.source == "tlc"
    assert settings.taxi_type == "green"
    assert settings.tlc_base_url == TLC_TRIP_DATA_URL
    assert settings.tlc_zone_lookup_url == TLC_ZONE_LOOKUP_URL
    assert settings.start_date == "2021-01-01"
    assert settings.training_window_days == 28
    # Offline MLflow: an absolute sqlite path (four slashes) and artifacts beside it.
    assert settings.mlflow_tracking_uri == f"sqlite:///{tmp_path.resolve()}/data/mlflow.db"
    assert settings.mlflow_tracking_uri.startswith("sqlite:////")
    assert settings.mlflow_artifact_location == str(settings.data_dir / "mlartifacts")
    assert settings.mlflow_experiment == "ml_assets"
    assert settings.model_name == "nyc-taxi-trip-duration"
    assert settings.mlflow_ui_url == "http://127.0.0.1:5000"


def test_every_core_variable_overrides_its_default(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "ML_ASSETS_DATA_DIR": str(tmp_path / "elsewhere"),
            "ML_ASSETS_SOURCE": "sample",
            "ML_ASSETS_TAXI_TYPE": "yellow",
            "ML_ASSETS_TLC_BASE_URL": "http://127.0.0.1:8000/trip-data",
            "ML_ASSETS_TLC_ZONE_LOOKUP_URL": "http://127.0.0.1:8000/zones.csv",
            "ML_ASSETS_START_DATE": "2021-02-01",
            "ML_ASSETS_TRAINING_WINDOW_DAYS": "7",
            "MLFLOW_TRACKING_URI": "http://127.0.0.1:5001",
            "ML_ASSETS_MLFLOW_EXPERIMENT": "exp",
            "ML_ASSETS_MODEL_NAME": "m",
            "ML_ASSETS_MLFLOW_UI_URL": "http://mlflow.internal",
        }
    )

    assert settings.data_dir == tmp_path / "elsewhere"
    assert (settings.source, settings.taxi_type) == ("sample", "yellow")
    assert settings.tlc_base_url == "http://127.0.0.1:8000/trip-data"
    assert settings.tlc_zone_lookup_url == "http://127.0.0.1:8000/zones.csv"
    assert (settings.start_date, settings.training_window_days) == ("2021-02-01", 7)
    assert settings.mlflow_tracking_uri == "http://127.0.0.1:5001"
    assert settings.mlflow_artifact_location is None  # a tracking server places artifacts itself
    assert (settings.mlflow_experiment, settings.model_name) == ("exp", "m")
    assert settings.mlflow_ui_url == "http://mlflow.internal"


def test_os_environ_is_the_default_source(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ML_ASSETS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ML_ASSETS_SOURCE", "sample")

    settings = Settings.from_env()

    assert (settings.data_dir, settings.source) == (tmp_path, "sample")


def test_an_unknown_source_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"ML_ASSETS_SOURCE='s3': expected 'tlc' or 'sample'"):
        Settings.from_env({"ML_ASSETS_SOURCE": "s3"})


@pytest.mark.parametrize("window", ["0", "-3", "seven", "367", "2.5"])
def test_a_bad_training_window_is_rejected(window: str) -> None:
    with pytest.raises(ValueError, match=rf"ML_ASSETS_TRAINING_WINDOW_DAYS='{window}'"):
        Settings.from_env({"ML_ASSETS_TRAINING_WINDOW_DAYS": window})


def test_resources_are_built_from_settings(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "ML_ASSETS_SOURCE": "sample",
            "ML_ASSETS_DATA_DIR": str(tmp_path),
            "ML_ASSETS_MODEL_NAME": "m",
        }
    )

    resources = build_resources(settings)

    assert resources["io_manager"].base_dir == str(tmp_path / "assets")
    assert resources["trip_source"].source == "sample"
    assert resources["trip_source"].cache_dir == str(tmp_path / "cache")
    assert resources["model_registry"].tracking_uri == settings.mlflow_tracking_uri
    assert resources["model_registry"].model_name == "m"
