"""MLflow in production: a tracking server with a PostgreSQL backend store and a shared artifact
location, reached by ml_assets only through MLFLOW_TRACKING_URI. Three days of the loop give the
same runs, registered versions and `champion` alias as the local SQLite store does."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from mlflow import MlflowClient

from ml_assets.jobs import ml_loop_job, promotion_job
from ml_assets.lib.registry_labels import CHAMPION_ALIAS, PROMOTED_ON_TAG, TRAINED_THROUGH_TAG
from ml_assets.resources import build_resources
from ml_assets.settings import Settings
from ml_assets_tests.graph import ASSET_CHECKS, ASSETS
from ml_assets_tests.processes import free_port
from ml_assets_tests.production_services import (
    child_environment,
    http_ok,
    postgres_database,
    postgres_url,
    start_service,
    stop_service,
    wait_for,
)

DAYS = ["2021-01-01", "2021-01-02", "2021-01-03"]
ASSETS = ASSETS


def _run_loop(settings: Settings) -> None:
    """taxi_zones, then the daily loop day after day, as `ml-assets-demo` runs it."""
    resources = build_resources(settings)
    with dg.instance_for_test() as instance:
        assert dg.materialize(
            ASSETS, selection=["taxi_zones"], resources=resources, instance=instance
        ).success
        for day in DAYS:
            result = dg.materialize(
                ASSETS,
                selection=ml_loop_job.selection,
                partition_key=day,
                resources=resources,
                instance=instance,
            )
            assert result.success, day
            if day != DAYS[0]:
                # The promotion decision, as the `promote_evaluated_day` sensor launches it (a
                # challenger that fails the gate fails this run and is not promoted).
                dg.materialize(
                    [*ASSETS, *ASSET_CHECKS],
                    selection=promotion_job.selection,
                    partition_key=day,
                    resources=resources,
                    instance=instance,
                    raise_on_error=False,
                )


def _registry_state(tracking_uri: str, settings: Settings) -> dict[str, object]:
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    versions = client.search_model_versions(f"name='{settings.model_name}'")
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    runs = client.search_runs([experiment.experiment_id])
    return {
        # Versions are numbers from a database store and strings over REST: compare as strings.
        "versions": {
            str(v.version): (v.tags.get(TRAINED_THROUGH_TAG), v.tags.get(PROMOTED_ON_TAG))
            for v in versions
        },
        "champion": str(
            client.get_model_version_by_alias(settings.model_name, CHAMPION_ALIAS).version
        ),
        "model_runs": sorted(
            run.data.tags["dagster_partition"]
            for run in runs
            if run.data.tags.get("dagster_asset") == "duration_model"
        ),
        "finished_runs": all(run.info.status == "FINISHED" for run in runs),
    }


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    """An `mlflow server` on a free loopback port: (its URL, its artifact folder, its database)."""
    artifacts = tmp_path / "shared-artifacts"
    port = free_port()
    with postgres_database("ml_assets_test_mlflow") as database:
        server = start_service(
            [
                *("mlflow", "server", "--backend-store-uri", postgres_url(database)),
                *("--artifacts-destination", str(artifacts), "--serve-artifacts"),
                *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
            ],
            child_environment(),
            tmp_path / "mlflow-server.log",
            tmp_path,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(
                lambda: server.poll() is not None or http_ok(f"{url}/health"),
                timeout=120,
                what="the MLflow server to answer /health",
            )
            assert server.poll() is None, (tmp_path / "mlflow-server.log").read_text()[-3000:]
            yield url, artifacts, database
        finally:
            stop_service(server)


@pytest.mark.slow
def test_mlflow_server_on_postgres_matches_the_local_store(
    tmp_path: Path, mlflow_server: tuple[str, Path, str]
) -> None:
    url, artifacts, _ = mlflow_server
    local = Settings.from_env(
        {"ML_ASSETS_SOURCE": "sample", "ML_ASSETS_DATA_DIR": str(tmp_path / "local")}
    )
    served = Settings.from_env(
        {
            "ML_ASSETS_SOURCE": "sample",
            "ML_ASSETS_DATA_DIR": str(tmp_path / "served"),
            "MLFLOW_TRACKING_URI": url,
        }
    )
    assert served.mlflow_tracking_uri == url
    assert served.mlflow_artifact_location is None  # the server decides where artifacts go

    _run_loop(local)
    _run_loop(served)

    expected = _registry_state(local.mlflow_tracking_uri, local)
    state = _registry_state(url, served)
    assert state == expected
    assert sorted(state["versions"]) == ["1", "2", "3"]
    assert [state["versions"][version][0] for version in ("1", "2", "3")] == DAYS
    assert state["model_runs"] == DAYS
    assert state["finished_runs"]
    assert state["champion"] in state["versions"]

    # Nothing went to the local store: the server kept the models in its shared artifact folder.
    assert not (tmp_path / "served" / "mlflow.db").exists()
    assert not (tmp_path / "served" / "mlartifacts").exists()
    assert len(list(artifacts.rglob("MLmodel"))) == len(DAYS)

    # The served predictions came from models loaded back through the server.
    served_predictions = tmp_path / "served" / "assets" / "trip_duration_predictions"
    assert sorted(path.stem for path in served_predictions.iterdir()) == DAYS
