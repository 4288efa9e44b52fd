"""An MLflow tracking server that is down, silent or failing fails a step quickly and says so.

Against loopback sockets: one that refuses, one that accepts and never answers, one answering 503.
Deadlines are short here; the elapsed-time bounds only guard against a hang.
"""

import time
from datetime import date
from pathlib import Path

import pytest

from ml_assets.lib.mlflow_server import (
    CLIENT_RETRY_DEFAULTS,
    TrackingServerUnavailable,
    bound_client_retries,
    check_tracking_server,
)
from ml_assets.lib.registry import ModelRegistry, RegistryError
from ml_assets.lib.setting_values import redact_url
from ml_assets.resources.mlflow import ModelRegistryResource
from ml_assets_tests.http_fixtures import silent_url
from ml_assets_tests.mlflow_fixtures import refusing_url, status_server

HANG_GUARD_SECONDS = 60


def _failure(uri: str, deadline: float) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(TrackingServerUnavailable) as raised:
        check_tracking_server(uri, deadline)
    return str(raised.value), time.monotonic() - started


def test_a_refused_connection_names_the_tracking_uri() -> None:
    url = refusing_url()

    message, elapsed = _failure(url, 1.0)

    assert elapsed < HANG_GUARD_SECONDS
    assert message.startswith(f"MLflow tracking server MLFLOW_TRACKING_URI={url} is unreachable:")
    assert "connection refused" in message
    assert f"GET {url}/health" in message
    assert "deadline 1 s" in message


def test_a_server_that_never_answers_times_out_within_the_deadline() -> None:
    with silent_url() as url:
        message, elapsed = _failure(url, 1.5)

    assert elapsed < HANG_GUARD_SECONDS
    assert f"MLFLOW_TRACKING_URI={url}" in message
    assert "no answer within" in message


def test_a_server_answering_503_is_retried_then_named_with_the_status() -> None:
    with status_server(503) as url:
        message, elapsed = _failure(url, 1.5)

    assert elapsed < HANG_GUARD_SECONDS
    assert f"MLFLOW_TRACKING_URI={url}" in message
    assert "answered HTTP 503 Service Unavailable" in message
    attempts = int(message.split(" attempt(s)")[0].rsplit(", ", 1)[1])
    assert attempts > 1  # a server restarting for a moment is waited for


def test_any_answer_but_unavailable_counts_as_reachable_and_local_stores_are_not_checked(
    tmp_path: Path,
) -> None:
    with status_server(404) as url:
        check_tracking_server(url, 1.0)  # a proxy without a /health route is still a server
    check_tracking_server(f"sqlite:///{tmp_path}/mlflow.db", 0.1)


def test_a_password_in_the_tracking_uri_is_never_shown() -> None:
    url = refusing_url().replace("http://", "http://alice:s3cret@")

    message, _ = _failure(url, 0.5)

    assert "s3cret" not in message
    assert "alice:***@127.0.0.1" in message
    assert redact_url("http://host:5000/x") == "http://host:5000/x"


def test_client_retries_are_bounded_unless_the_user_set_them() -> None:
    environ = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "300"}

    effective = bound_client_retries(environ)

    assert effective == {**CLIENT_RETRY_DEFAULTS, "MLFLOW_HTTP_REQUEST_TIMEOUT": "300"}
    assert environ == effective


def test_the_registry_resource_fails_fast_naming_the_tracking_uri() -> None:
    url = refusing_url()
    resource = ModelRegistryResource(
        tracking_uri=url, model_name="m", ui_url="http://ui", server_deadline_seconds=0.5
    )

    started = time.monotonic()
    with pytest.raises(TrackingServerUnavailable, match=f"MLFLOW_TRACKING_URI={url} "):
        resource.registry()
    assert time.monotonic() - started < HANG_GUARD_SECONDS


def test_a_registry_answering_errors_is_not_a_registry_without_versions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No MLflow-level retries: the step's retry policy is what retries a registry error.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with status_server(503) as url:
        registry = ModelRegistry(url, "trip-model")
        with pytest.raises(RegistryError) as raised:
            registry.champion_going_into(date(2021, 1, 3))
        with pytest.raises(RegistryError, match="get_registered_model failed"):
            registry.current_champion()

    message = str(raised.value)
    assert message.startswith(
        f"MLflow model registry at {url} (MLFLOW_TRACKING_URI), model 'trip-model': "
        "search_model_versions failed:"
    )


@pytest.mark.slow  # creating a fresh sqlite MLflow store takes seconds
def test_an_unregistered_model_has_no_versions_and_no_champion(tmp_path: Path) -> None:
    registry = ModelRegistry(f"sqlite:///{tmp_path}/mlflow.db", "never-registered")

    assert registry._versions() == []
    assert registry.current_champion() is None
