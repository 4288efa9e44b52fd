"""Settings read from the environment: defaults, overrides and clear errors."""

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from ml_assets.executors import executor_from_env
from ml_assets.lib.tlc_client import TLC_TRIP_DATA_URL, TLC_ZONE_LOOKUP_URL
from ml_assets.resources import build_resources
from ml_assets.settings import Settings, SettingsError
from ml_assets_tests.dagster_dev import DagsterGraphQL, running_dagster_dev
from ml_assets_tests.processes import default_signal_handling


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


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "ML_ASSETS_START_DATE",
            "not-a-date",
            "ML_ASSETS_START_DATE='not-a-date': expected a calendar date as YYYY-MM-DD, "
            "such as 2021-01-01",
        ),
        (
            "ML_ASSETS_START_DATE",
            "2021-02-30",
            "ML_ASSETS_START_DATE='2021-02-30': expected a calendar date as YYYY-MM-DD, "
            "such as 2021-01-01",
        ),
        (
            "ML_ASSETS_TAXI_TYPE",
            "purple",
            "ML_ASSETS_TAXI_TYPE='purple': expected one of green, yellow",
        ),
        (
            "ML_ASSETS_EXECUTOR",
            "bogus",
            "ML_ASSETS_EXECUTOR='bogus': expected one of multiprocess, in_process, celery",
        ),
        (
            "ML_ASSETS_TRAINING_WINDOW_DAYS",
            "0",
            "ML_ASSETS_TRAINING_WINDOW_DAYS='0': expected a whole number of days, 1..366",
        ),
        ("ML_ASSETS_SOURCE", "s3", "ML_ASSETS_SOURCE='s3': expected one of tlc, sample"),
        (
            "ML_ASSETS_TLC_BASE_URL",
            "ftp://mirror/trip-data",
            "ML_ASSETS_TLC_BASE_URL='ftp://mirror/trip-data': expected an http:// or https:// "
            "URL such as http://127.0.0.1:8000",
        ),
        (
            "ML_ASSETS_TLC_ZONE_LOOKUP_URL",
            "taxi_zone_lookup.csv",
            "ML_ASSETS_TLC_ZONE_LOOKUP_URL='taxi_zone_lookup.csv': expected an http:// or "
            "https:// URL such as http://127.0.0.1:8000",
        ),
        (
            "ML_ASSETS_MLFLOW_UI_URL",
            "http://mlflow:port",
            "ML_ASSETS_MLFLOW_UI_URL='http://mlflow:port': expected an http:// or https:// URL "
            "such as http://127.0.0.1:8000",
        ),
        (
            "ML_ASSETS_UI_URL",
            "127.0.0.1:3000",
            "ML_ASSETS_UI_URL='127.0.0.1:3000': expected an http:// or https:// URL such as "
            "http://127.0.0.1:8000",
        ),
        (
            "ML_ASSETS_MODEL_NAME",
            "team/model",
            "ML_ASSETS_MODEL_NAME='team/model': expected an MLflow model name without '/' or "
            "':' and without surrounding spaces",
        ),
        (
            "ML_ASSETS_MLFLOW_EXPERIMENT",
            "x" * 501,
            f"ML_ASSETS_MLFLOW_EXPERIMENT='{'x' * 501}': expected an MLflow experiment name of "
            "at most 500 characters",
        ),
        (
            "ML_ASSETS_RETRAIN_CRON",
            "every day",
            "ML_ASSETS_RETRAIN_CRON='every day': expected a five-field cron expression such as "
            "'0 6 * * *' (every day at 06:00 UTC) or '0 6 * * 1' (Mondays)",
        ),
        (
            "ML_ASSETS_RETRAIN_CRON",
            "0 25 * * *",
            "ML_ASSETS_RETRAIN_CRON='0 25 * * *': expected a five-field cron expression such as "
            "'0 6 * * *' (every day at 06:00 UTC) or '0 6 * * 1' (Mondays); hour '25' is not "
            "valid (0..23)",
        ),
        (
            "ML_ASSETS_RMSE_REGRESSION_MARGIN",
            "10%",
            "ML_ASSETS_RMSE_REGRESSION_MARGIN='10%': expected a share such as 0.1 (10%), "
            "from 0 to 10",
        ),
        (
            "ML_ASSETS_RMSE_TRAILING_DAYS",
            "a week",
            "ML_ASSETS_RMSE_TRAILING_DAYS='a week': expected a whole number of days, 1..366",
        ),
        (
            "ML_ASSETS_CELERY_BROKER",
            "redis//:s3cret@broker:6379/0",
            "ML_ASSETS_CELERY_BROKER='redis//:s3cret@broker:6379/0': expected a URL such as "
            "redis://127.0.0.1:6379/0 or amqp://host:5672//",
        ),
        (
            "ML_ASSETS_CELERY_BACKEND",
            "rpc",
            "ML_ASSETS_CELERY_BACKEND='rpc': expected a URL such as redis://127.0.0.1:6379/0 "
            "or amqp://host:5672//",
        ),
        (
            "ML_ASSETS_CELERY_QUEUE",
            "night ly",
            "ML_ASSETS_CELERY_QUEUE='night ly': expected a queue name of letters, digits, '.', "
            "':', '_' and '-'",
        ),
    ],
)
def test_an_invalid_setting_is_one_line_naming_variable_value_and_what_is_accepted(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({name: value})

    assert str(raised.value) == message
    assert "\n" not in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_the_end_date_makes_a_historical_run_and_is_checked_against_the_start() -> None:
    assert Settings.from_env({}).end_date is None
    assert Settings.from_env({"ML_ASSETS_END_DATE": "2021-01-07"}).end_date == "2021-01-07"
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(
            {"ML_ASSETS_START_DATE": "2021-02-01", "ML_ASSETS_END_DATE": "2021-01-31"}
        )
    assert str(raised.value) == (
        "ML_ASSETS_END_DATE='2021-01-31': expected a day on or after ML_ASSETS_START_DATE "
        "(2021-02-01)"
    )
    with pytest.raises(SettingsError, match=r"^ML_ASSETS_END_DATE='Jan 7': expected a calendar"):
        Settings.from_env({"ML_ASSETS_END_DATE": "Jan 7"})


def test_a_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("")
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"ML_ASSETS_DATA_DIR": str(tmp_path / "data")})
    assert str(raised.value) == (
        f"ML_ASSETS_DATA_DIR='{tmp_path / 'data'}': expected a directory (or where one may be "
        "created), but it is a file"
    )


def test_a_password_in_a_refused_url_is_masked() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"ML_ASSETS_CELERY_BROKER": "redis://:s3cret@broker:6379/0 #prod"})
    assert str(raised.value).startswith("ML_ASSETS_CELERY_BROKER='redis://:***@broker:6379/0 #")
    assert "s3cret" not in str(raised.value)


def test_an_empty_variable_counts_as_unset() -> None:
    settings = Settings.from_env(
        {"ML_ASSETS_SOURCE": "", "ML_ASSETS_TAXI_TYPE": " ", "ML_ASSETS_EXECUTOR": ""}
    )
    assert (settings.source, settings.taxi_type, settings.executor) == (
        "tlc",
        "green",
        "multiprocess",
    )


def test_the_executor_is_a_setting() -> None:
    settings = Settings.from_env({"ML_ASSETS_EXECUTOR": "in_process"})
    assert settings.executor == "in_process"
    assert executor_from_env(settings) is dg.in_process_executor
    assert executor_from_env(Settings.from_env({})).name == dg.multi_or_in_process_executor.name
    assert "guest" not in repr(Settings.from_env({}))  # the broker URL's password


def _without_settings() -> dict[str, str]:
    """This process's environment without any ml_assets, MLflow or Dagster variable."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("ML_ASSETS_", "MLFLOW_", "DAGSTER_"))
    }


@pytest.mark.slow
def test_dagster_cli_prints_the_one_line_when_a_setting_is_invalid(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", "ml_assets.definitions"],
        cwd=tmp_path,  # no .env here
        env={**_without_settings(), "ML_ASSETS_TAXI_TYPE": "purple"},
        capture_output=True,
        text=True,
        timeout=180,
        preexec_fn=default_signal_handling,
    )

    output = completed.stdout + completed.stderr
    assert completed.returncode == 1, output
    assert "SettingsError: ML_ASSETS_TAXI_TYPE='purple': expected one of green, yellow" in output
    assert "TripSource" not in output and "pydantic" not in output


@pytest.mark.slow
def test_dagster_dev_shows_the_one_line_as_the_code_locations_error(tmp_path: Path) -> None:
    env = {
        **_without_settings(),
        "DAGSTER_HOME": str(tmp_path / "home"),
        "ML_ASSETS_START_DATE": "not-a-date",
    }
    (tmp_path / "home").mkdir()
    log = tmp_path / "dagster_dev.log"
    target = ("-m", "ml_assets.definitions")
    with running_dagster_dev(target, cwd=tmp_path, env=env, log=log) as url:
        deadline = time.monotonic() + 180
        while True:
            (entry,) = DagsterGraphQL(url).locations()
            if entry["loadStatus"] == "LOADED" or time.monotonic() > deadline:
                break
            time.sleep(1)

    error = entry["locationOrLoadError"]
    assert error["__typename"] == "PythonError", entry
    # Dagster wraps it in "Error occurred during the loading of Dagster definitions"; the UI
    # shows the cause below that.
    assert [cause["message"] for cause in error["causes"]] == [
        "ml_assets.settings.SettingsError: ML_ASSETS_START_DATE='not-a-date': expected a "
        "calendar date as YYYY-MM-DD, such as 2021-01-01\n"
    ]
