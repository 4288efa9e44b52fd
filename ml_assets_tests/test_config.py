"""Run config for ad hoc runs: defaults, validation messages, and its effect on what is built."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import mlflow
import pytest

from ml_assets.config import IngestionConfig, TrainingConfig
from ml_assets.jobs import model_evaluation_job, retrain_job
from ml_assets.lib.model import ModelParams
from ml_assets.sensors.retrain import evaluate_retrained_model, evaluation_day_after
from ml_assets.settings import Settings
from ml_assets_tests.conftest import REPO_ROOT, local_instance, new_local_home, range_tags
from ml_assets_tests.graph import TRAINING_WINDOW_DAYS, WITHOUT_PREDICTIONS

ASSETS = WITHOUT_PREDICTIONS
DAYS = ["2021-01-01", "2021-01-02", "2021-01-03"]


def _materialize_features(
    days: list[str], resources: dict[str, object], instance: dg.DagsterInstance
) -> None:
    dg.materialize(ASSETS, selection=["taxi_zones"], resources=resources, instance=instance)
    for day in days:
        dg.materialize(
            ASSETS,
            selection=["raw_trips", "trip_features"],
            partition_key=day,
            resources=resources,
            instance=instance,
        )


def _model_config(**config: object) -> dict[str, object]:
    return {"ops": {"duration_model": {"config": config}}}


def test_defaults_are_the_daily_model() -> None:
    config = TrainingConfig()

    assert config.model_params() == ModelParams()
    assert config.window_days is None  # the whole window the daily loop loads
    assert IngestionConfig().taxi_type_or("green") == "green"


def test_every_field_is_described_for_the_launchpad() -> None:
    for config_class in (TrainingConfig, IngestionConfig):
        for name, field in config_class.model_fields.items():
            assert field.description, f"{config_class.__name__}.{name} has no description"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"window_days": 0}, "greater than or equal to 1"),
        ({"window_days": 367}, "less than or equal to 366"),
        ({"learning_rate": 0.0}, "greater than 0"),
        ({"max_iter": 0}, "greater than or equal to 1"),
        ({"ridge_alpha": -1.0}, "greater than 0"),
        ({"feature_groups": []}, "at least 1 item"),
        ({"feature_groups": ["zones", "zones"]}, "zones listed more than once"),
    ],
)
def test_out_of_range_values_are_rejected_naming_the_field(
    bad: dict[str, object], message: str
) -> None:
    with pytest.raises(dg.Failure) as raised:
        TrainingConfig(**bad)

    text = raised.value.description or ""
    assert text.startswith("invalid TrainingConfig: ")
    assert not raised.value.allow_retries
    assert next(iter(bad)) in text
    assert message in text


def test_unknown_choices_are_rejected_before_the_run_is_launched(
    resources: dict[str, object], settings: Settings
) -> None:
    defs = dg.Definitions(assets=ASSETS, jobs=[retrain_job], resources=resources)
    job = defs.resolve_job_def("retrain_job")
    for field, value in [("family", "xgboost"), ("feature_groups", ["weather"])]:
        with pytest.raises(dg.DagsterInvalidConfigError) as raised:
            job.execute_in_process(
                run_config=_model_config(**{field: value}), partition_key="2021-01-03"
            )
        assert f"config:{field}" in str(raised.value)
        assert "not in enum type" in str(raised.value)
    assert not settings.data_dir.exists()


@pytest.mark.slow
def test_config_chooses_family_features_and_window(
    resources: dict[str, object], instance: dg.DagsterInstance, settings: Settings
) -> None:
    _materialize_features(DAYS, resources, instance)

    result = dg.materialize(
        ASSETS,
        selection=["duration_model"],
        partition_key="2021-01-03",
        resources=resources,
        instance=instance,
        run_config=_model_config(
            family="ridge", ridge_alpha=3.0, feature_groups=["time", "distance"], window_days=2
        ),
    )

    record = json.loads((settings.assets_dir / "duration_model" / "2021-01-03.json").read_text())
    assert record["params"]["family"] == "ridge"
    assert record["params"]["ridge_alpha"] == "3.0"
    assert record["params"]["feature_groups"] == "distance,time"
    assert (record["window_start"], record["window_end"]) == ("2021-01-02", "2021-01-03")
    metadata = result.asset_materializations_for_node("duration_model")[0].metadata
    assert metadata["model_family"].value == "ridge"
    assert metadata["window_days"].value == 2
    # The time group's inputs: hour and weekday, and what the model derives from the pickup time.
    assert set(metadata["feature_importance"].value) == {
        "trip_distance",
        "pickup_hour",
        "pickup_dow",
        "pickup_minute",
        "pickup_holiday",
        "pickup_whole_minute",
    }


def test_bad_config_fails_before_training(
    resources: dict[str, object], instance: dg.DagsterInstance, settings: Settings
) -> None:
    _materialize_features(DAYS[:1], resources, instance)

    result = dg.materialize(
        ASSETS,
        selection=["duration_model"],
        partition_key="2021-01-01",
        resources=resources,
        instance=instance,
        run_config=_model_config(window_days=TRAINING_WINDOW_DAYS + 5),
        raise_on_error=False,
    )
    assert not result.success
    # The step never reached the code that ends its MLflow run: the resource closed it, so the
    # next run in this process starts a run of its own.
    assert mlflow.active_run() is None
    (failure,) = [event for event in result.all_events if event.is_step_failure]
    assert (
        f"invalid TrainingConfig: window_days: {TRAINING_WINDOW_DAYS + 5} is longer than the "
        f"{TRAINING_WINDOW_DAYS} days the daily loop loads (ML_ASSETS_TRAINING_WINDOW_DAYS)"
    ) in failure.step_failure_data.error.to_string()
    # A bad launch is not transient: the step's retry policy must not retry it.
    assert not [
        event for event in result.all_events if event.event_type_value == "STEP_UP_FOR_RETRY"
    ]
    assert not (settings.assets_dir / "duration_model").exists()


def test_ingestion_config_picks_the_taxi_type(
    resources: dict[str, object], instance: dg.DagsterInstance
) -> None:
    result = dg.materialize(
        ASSETS,
        selection=["raw_trips"],
        partition_key="2021-01-01",
        resources=resources,
        instance=instance,
        run_config={"ops": {"raw_trips": {"config": {"taxi_type": "yellow"}}}},
    )

    metadata = result.asset_materializations_for_node("raw_trips")[0].metadata
    assert metadata["taxi_type"].value == "yellow"
    assert "yellow" in metadata["source"].value


def _evaluation_after(
    run: dg.ExecuteInProcessResult, instance: dg.DagsterInstance
) -> dg.RunRequest | list[dg.RunRequest] | dg.SkipReason:
    """What `evaluate_retrained_model` asks for once the retrain `run` succeeded."""
    context = dg.build_run_status_sensor_context(
        sensor_name=evaluate_retrained_model.name,
        dagster_event=run.get_run_success_event(),
        dagster_instance=instance,
        dagster_run=run.dagster_run,
    )
    return evaluate_retrained_model(context)


@pytest.mark.slow
def test_retrained_model_is_sent_to_evaluation_on_the_next_day(
    resources: dict[str, object], instance: dg.DagsterInstance
) -> None:
    _materialize_features(DAYS[:2], resources, instance)
    defs = dg.Definitions(assets=ASSETS, jobs=[retrain_job], resources=resources)

    run = defs.resolve_job_def("retrain_job").execute_in_process(
        run_config=_model_config(family="ridge"), partition_key="2021-01-01", instance=instance
    )
    request = _evaluation_after(run, instance)

    assert isinstance(request, dg.RunRequest)
    assert request.partition_key == "2021-01-02"
    assert request.run_key == run.run_id
    assert request.job_name in (None, model_evaluation_job.name)
    assert evaluation_day_after("2021-01-02", {"2021-01-01", "2021-01-02"}) is None


@pytest.mark.slow
def test_a_retrain_of_a_range_sends_each_day_with_features_to_evaluation(
    resources: dict[str, object], instance: dg.DagsterInstance
) -> None:
    _materialize_features(DAYS, resources, instance)
    defs = dg.Definitions(assets=ASSETS, jobs=[retrain_job], resources=resources)

    # A backfill of retrain_job trains all its days in one run.
    run = defs.resolve_job_def("retrain_job").execute_in_process(
        run_config=_model_config(family="ridge"),
        instance=instance,
        tags=range_tags(DAYS[0], DAYS[-1]),
    )
    requests = _evaluation_after(run, instance)

    # The model of the last day waits for its next day's features.
    assert isinstance(requests, list)
    assert [request.partition_key for request in requests] == DAYS[1:]
    assert [request.run_key for request in requests] == [f"{run.run_id} {day}" for day in DAYS[:2]]


@pytest.mark.slow
def test_retrain_from_the_command_line(
    resources: dict[str, object], instance: dg.DagsterInstance, settings: Settings, tmp_path: Path
) -> None:
    """The README's command, run as a user would, against a fresh DAGSTER_HOME."""
    _materialize_features(DAYS[:2], resources, instance)
    home = new_local_home(tmp_path)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "ML_ASSETS_SOURCE": "sample",
        "ML_ASSETS_DATA_DIR": str(settings.data_dir),
    }
    # One process for the whole run keeps the test quick; the config is the example's.
    in_process = tmp_path / "in_process.yaml"
    in_process.write_text("execution:\n  config:\n    in_process: {}\n")
    command = [
        *(sys.executable, "-m", "dagster", "job", "execute"),
        *("-m", "ml_assets.definitions", "-j", "retrain_job", "-c", str(in_process)),
        *("-c", str(REPO_ROOT / "examples" / "retrain_ridge.yaml")),
        *("--tags", '{"dagster/partition": "2021-01-02"}'),
    ]

    # Not the repo root: the dagster CLI would let a developer's .env there override `env`.
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = json.loads((settings.assets_dir / "duration_model" / "2021-01-02.json").read_text())
    assert record["params"]["family"] == "ridge"
    assert record["params"]["feature_groups"] == "zones,distance,time"
    assert record["window_days"] == 7
    with local_instance(home) as cli_instance:
        (run,) = cli_instance.get_runs()
        assert run.job_name == "retrain_job"
        assert run.status == dg.DagsterRunStatus.SUCCESS

    bad = subprocess.run(
        [*command[:-4], "-c", str(_write_bad_config(tmp_path)), *command[-2:]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode != 0
    assert "family" in bad.stdout + bad.stderr
    assert "not in enum type" in bad.stdout + bad.stderr


def _write_bad_config(folder: Path) -> Path:
    path = folder / "bad.yaml"
    path.write_text("ops:\n  duration_model:\n    config:\n      family: random_forest\n")
    return path
