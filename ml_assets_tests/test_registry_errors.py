"""A registry that answers with errors, or not at all, fails `model_evaluation` and never promotes.

Against a real `mlflow server` (sqlite backend in a temporary folder): first behind a loopback
proxy answering 503 to the registry's version search, then stopped. Either way the step fails
naming the registry and the call (or `MLFLOW_TRACKING_URI`), its retry policy retries it, and the
`champion` alias and the promotion tags stay as they were.
"""

import time
from pathlib import Path

import dagster as dg
import pytest
from mlflow import MlflowClient

from ml_assets.lib.registry_labels import CHAMPION_ALIAS, PROMOTED_ON_TAG
from ml_assets.resources import build_resources
from ml_assets.resources.mlflow import ModelRegistryResource
from ml_assets.settings import Settings
from ml_assets_tests.graph import ASSETS as EVERY_ASSET
from ml_assets_tests.graph import WITHOUT_PREDICTIONS
from ml_assets_tests.mlflow_fixtures import FailingProxy, mlflow_server

PROMOTION = ["challenger_validation", "model_promotion"]
ASSETS = [
    *WITHOUT_PREDICTIONS,
    *(asset for asset in EVERY_ASSET if asset.key.to_user_string() in PROMOTION),
]
HANG_GUARD_SECONDS = 120


def _settings(data_dir: Path, tracking_uri: str) -> Settings:
    return Settings.from_env(
        {
            "ML_ASSETS_SOURCE": "sample",
            "ML_ASSETS_DATA_DIR": str(data_dir),
            "MLFLOW_TRACKING_URI": tracking_uri,
        }
    )


def _materialize(
    selection: list[str], day: str | None, resources: dict[str, object], instance: object
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        ASSETS,
        selection=selection,
        partition_key=day,
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )


def _promotions(client: MlflowClient, name: str) -> dict[str, str | None]:
    return {
        str(version.version): version.tags.get(PROMOTED_ON_TAG)
        for version in client.search_model_versions(f"name='{name}'")
    }


def _evaluation_failure(result: dg.ExecuteInProcessResult) -> tuple[str, int]:
    """The final step failure's message and how often the step was retried."""
    assert not result.success
    failures = [event for event in result.all_events if event.is_step_failure]
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    return failures[-1].step_failure_data.error.to_string(), len(retries)


@pytest.mark.slow
def test_a_failing_or_stopped_registry_fails_evaluation_and_never_promotes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MLflow's own retries off: the step's retry policy is what must retry a registry error.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    data_dir = tmp_path / "data"
    with mlflow_server(tmp_path / "mlflow") as (url, backend), dg.instance_for_test() as instance:
        settings = _settings(data_dir, url)
        resources = build_resources(settings)
        # v1 (day 1) wins day 2 and becomes champion; v2 (day 2) is the challenger of day 3.
        assert _materialize(["taxi_zones"], None, resources, instance).success
        loop = ["raw_trips", "trip_features", "duration_model"]
        assert _materialize(loop, "2021-01-01", resources, instance).success
        day2 = [*loop, "model_evaluation", *PROMOTION]
        assert _materialize(day2, "2021-01-02", resources, instance).success
        assert _materialize(loop[:2], "2021-01-03", resources, instance).success
        client = MlflowClient(tracking_uri=url, registry_uri=url)
        name = settings.model_name
        champion = client.get_model_version_by_alias(name, CHAMPION_ALIAS).version
        before = _promotions(client, name)
        assert str(champion) == "1"
        assert before == {"1": "2021-01-02", "2": None}

        # The registry answers 503 to every search of versions.
        proxy = FailingProxy(url, lambda path: "/model-versions/search" in path)
        with proxy.running() as proxy_url:
            proxied = build_resources(_settings(data_dir, proxy_url))
            started = time.monotonic()
            result = _materialize(["model_evaluation"], "2021-01-03", proxied, instance)
            elapsed = time.monotonic() - started

        message, retries = _evaluation_failure(result)
        assert elapsed < HANG_GUARD_SECONDS
        assert (
            f"MLflow model registry at {proxy_url} (MLFLOW_TRACKING_URI), model '{name}': "
            "search_model_versions failed:"
        ) in message
        assert retries == 2  # transient: the step's retry policy retried it
        assert len(proxy.failed) == 3
        assert str(client.get_model_version_by_alias(name, CHAMPION_ALIAS).version) == "1"
        assert _promotions(client, name) == before

    # The server is down now (its store stays on disk).
    resources["model_registry"] = ModelRegistryResource(
        tracking_uri=url,
        model_name=name,
        ui_url=settings.mlflow_ui_url,
        server_deadline_seconds=1,
    )
    with dg.instance_for_test() as instance:
        started = time.monotonic()
        result = _materialize(["model_evaluation"], "2021-01-03", resources, instance)
        elapsed = time.monotonic() - started

    message, retries = _evaluation_failure(result)
    assert elapsed < HANG_GUARD_SECONDS
    assert f"MLflow tracking server MLFLOW_TRACKING_URI={url} is unreachable" in message
    assert "connection refused" in message
    assert retries == 2
    store = MlflowClient(tracking_uri=backend, registry_uri=backend)
    assert str(store.get_model_version_by_alias(name, CHAMPION_ALIAS).version) == "1"
    assert _promotions(store, name) == before
