"""MLflow runs of `duration_model`: a step that logs nothing leaves no run; one that logged keeps it;
a tracking server that is down fails the step naming it.

Against the local sqlite MLflow store of the data directory, as a laptop runs it.
"""

import time

import dagster as dg
import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType

from ml_assets.jobs import retrain_job
from ml_assets.resources.mlflow_tracking import mlflow_tracking
from ml_assets.settings import Settings
from ml_assets_tests.graph import TRAINING_WINDOW_DAYS, WITHOUT_PREDICTIONS
from ml_assets_tests.mlflow_fixtures import refusing_url

ASSETS = WITHOUT_PREDICTIONS
DAY = "2021-01-01"


def _features_of(day: str, resources: dict[str, object], instance: dg.DagsterInstance) -> None:
    dg.materialize(ASSETS, selection=["taxi_zones"], resources=resources, instance=instance)
    dg.materialize(
        ASSETS,
        selection=["raw_trips", "trip_features"],
        partition_key=day,
        resources=resources,
        instance=instance,
    )


def _runs(settings: Settings) -> list[object]:
    """Every run of the experiment, deleted ones included."""
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL)


@pytest.mark.slow
def test_a_refused_retrain_config_leaves_no_mlflow_run(
    resources: dict[str, object], instance: dg.DagsterInstance, settings: Settings
) -> None:
    _features_of(DAY, resources, instance)
    defs = dg.Definitions(assets=ASSETS, jobs=[retrain_job], resources=resources)
    bad = {"ops": {"duration_model": {"config": {"window_days": TRAINING_WINDOW_DAYS + 1}}}}

    for _ in range(2):
        result = defs.resolve_job_def("retrain_job").execute_in_process(
            run_config=bad, partition_key=DAY, instance=instance, raise_on_error=False
        )
        assert not result.success
        (failure,) = [event for event in result.all_events if event.is_step_failure]
        assert "invalid TrainingConfig: window_days" in failure.step_failure_data.error.message

    assert _runs(settings) == []


@pytest.mark.slow
def test_a_run_that_logged_keeps_its_history_when_the_step_fails(
    resources: dict[str, object], instance: dg.DagsterInstance, settings: Settings
) -> None:
    _features_of(DAY, resources, instance)
    # A file where the experiment's artifacts must go: params and metrics reach the store, the
    # model cannot.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    blocker = settings.data_dir / "mlartifacts"
    blocker.write_text("not a folder")

    result = dg.materialize(
        ASSETS,
        selection=["duration_model"],
        partition_key=DAY,
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )

    assert not result.success
    (failure,) = [event for event in result.all_events if event.is_step_failure]
    assert f"partition {DAY}" in failure.step_failure_data.error.message
    # Waiting does not move the file: the step is not retried.
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    (run,) = _runs(settings)
    assert run.info.status == "FAILED"
    assert run.info.lifecycle_stage == "active"
    assert run.data.params["window_start"] == DAY
    assert "val_rmse" in run.data.metrics
    assert run.data.tags["dagster_run_id"] == result.run_id


@pytest.mark.slow
def test_an_unreachable_tracking_server_fails_training_naming_it(
    resources: dict[str, object], instance: dg.DagsterInstance
) -> None:
    _features_of(DAY, resources, instance)
    url = refusing_url()
    unreachable = {
        **resources,
        "mlflow_tracking": mlflow_tracking.configured(
            {
                "experiment_name": "ml_assets",
                "mlflow_tracking_uri": url,
                "server_deadline_seconds": 1,
            }
        ),
    }

    started = time.monotonic()
    result = dg.materialize(
        ASSETS,
        selection=["duration_model"],
        partition_key=DAY,
        resources=unreachable,
        instance=instance,
        raise_on_error=False,
    )

    assert time.monotonic() - started < 120  # a hang guard: 3 attempts of 1 s, 5 and 10 s apart
    assert not result.success
    failures = [event for event in result.all_events if event.is_step_failure]
    message = failures[-1].step_failure_data.error.to_string()
    assert f"MLflow tracking server MLFLOW_TRACKING_URI={url} is unreachable" in message
    assert "connection refused" in message
    # A server that is down may come back: the step's retry policy retries it.
    assert len([e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]) == 2
    logged = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any(f"MLflow tracking URI {url} (MLFLOW_TRACKING_URI)" in line for line in logged)
