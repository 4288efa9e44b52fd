"""The MLflow tracking resource's config matches dagster-mlflow's, which it declares itself, and
the MLflow modules use only Dagster's public API."""

import warnings

import dagster as dg
import pytest
import tenacity

from ml_assets.resources.mlflow_tracking import mlflow_tracking, store_retrying

with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    from dagster_mlflow.resources import CONFIG_SCHEMA


def _described(field: dg.Field) -> tuple[object, ...]:
    return (
        field.config_type.key,
        field.is_required,
        field.default_provided and field.default_value,
        field.description,
    )


def test_mlflow_tracking_config_is_dagster_mlflows_plus_ours() -> None:
    # Declared in ml_assets (importing CONFIG_SCHEMA imports MLflow): an upgrade of dagster-mlflow
    # that changes its config must be followed here.
    fields = dict(mlflow_tracking.config_schema.config_type.fields)
    assert fields.pop("artifact_location").config_type.key == "Noneable.StringSourceType"
    deadline = fields.pop("server_deadline_seconds")
    assert (deadline.config_type.key, deadline.default_value) == ("Float", 30.0)
    assert {name: _described(field) for name, field in fields.items()} == {
        name: _described(field) for name, field in CONFIG_SCHEMA.items()
    }


def _waits(retrying: tenacity.Retrying, attempts: int) -> list[float]:
    waits = []
    state = tenacity.RetryCallState(retrying, fn=None, args=(), kwargs={})
    for attempt in range(1, attempts + 1):
        state.attempt_number = attempt
        waits.append(retrying.wait(state))
    return waits


def test_store_setup_retries_five_times_with_jittered_backoff() -> None:
    retrying = store_retrying(deadline_seconds=30)
    # As the hand-written loop it replaces: delay + uniform(0, delay), delay 0.5, 1, 2, 4 s.
    for attempt, wait in enumerate(_waits(retrying, 4), start=1):
        delay = 0.5 * 2 ** (attempt - 1)
        assert delay <= wait <= 2 * delay

    calls: list[int] = []

    def busy_then_ready() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("database is locked")
        return "ready"

    def always_busy() -> None:
        calls.append(1)
        raise RuntimeError("database is locked")

    no_sleep = retrying.copy(sleep=lambda seconds: None)
    assert no_sleep(busy_then_ready) == "ready"
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(RuntimeError, match="database is locked"):
        no_sleep(always_busy)
    assert len(calls) == 5


def test_store_setup_starts_no_attempt_after_its_deadline() -> None:
    calls: list[int] = []

    def always_busy() -> None:
        calls.append(1)
        raise RuntimeError("database is locked")

    with pytest.raises(RuntimeError):
        store_retrying(deadline_seconds=0)(always_busy)
    assert len(calls) == 1
