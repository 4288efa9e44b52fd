"""Shared fixtures: an isolated data directory, sample-source settings and resources."""

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import dagster as dg
import pytest

from ml_assets.resources import build_resources
from ml_assets.settings import Settings
from ml_assets_tests.graph import taxi_zones
from ml_assets_tests.http_fixtures import FileServer

REPO_ROOT = Path(__file__).resolve().parents[1]

SHARED_TLC_DIR = Path(
    os.environ.get(
        "ML_ASSETS_SHARED_TLC_DIR",
        Path(__file__).resolve().parents[2] / "shared" / "data" / "nyc-tlc",
    )
)
"""The real TLC files (green 2021-01..03, zone lookup); `ML_ASSETS_SHARED_TLC_DIR` overrides it."""


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`--numprocesses=auto` (pyproject.toml): half as many workers again as there are cores.

    Most of the slow tier waits (on `dagster dev`, daemons, MLflow and Prefect servers, child
    processes) rather than computes: on this 2-core machine the whole suite took 1,416 to 1,734 s
    on two workers and 870 s on three.
    """
    return max(1, (os.cpu_count() or 1) * 3 // 2)


@pytest.fixture(autouse=True)
def environment_as_found() -> Iterator[None]:
    """Each test leaves the process environment as it found it.

    MLflow's `set_tracking_uri`, which every in-process run with MLflow calls, also exports
    `MLFLOW_TRACKING_URI` to `os.environ`: a later test on the same worker that builds its
    environment from `os.environ` would point its runs at this test's store, by then deleted.
    """
    before = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(before)


def new_local_home(parent: Path) -> Path:
    """A fresh DAGSTER_HOME under `parent` holding the local template, as `scripts/setup` makes."""
    home = parent / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    return home


def range_tags(first: str, last: str) -> dict[str, str]:
    """The tags of a run over the partitions `first`..`last`, as a single-run backfill sets them."""
    return {
        "dagster/asset_partition_range_start": first,
        "dagster/asset_partition_range_end": last,
    }


@contextlib.contextmanager
def local_instance(home: Path) -> Iterator[dg.DagsterInstance]:
    """The instance of a DAGSTER_HOME holding the local template (`deploy/dagster.yaml`).

    The template locates its event log through the DAGSTER_HOME variable, as every `dagster`
    process has it; a test opening the instance in its own process sets it while doing so.
    """
    with mock.patch.dict(os.environ, {"DAGSTER_HOME": str(home)}):
        instance = dg.DagsterInstance.from_config(str(home))
    with instance:
        yield instance


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Offline settings: the synthetic sample source, everything under a fresh temp folder."""
    return Settings.from_env(
        {"ML_ASSETS_SOURCE": "sample", "ML_ASSETS_DATA_DIR": str(tmp_path / "data")}
    )


@pytest.fixture
def resources(settings: Settings) -> dict[str, object]:
    return build_resources(settings)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def tlc_server(tmp_path: Path) -> Iterator[FileServer]:
    """A real HTTP file host on 127.0.0.1 (free port), standing in for TLC's.

    Publish files with `add_file(name, bytes_or_path)`, script failures per path with
    `script(path, [404] | [503, 503] | [ScriptedResponse(truncate_to=...)])`, read what clients
    asked for in `requests` / `requests_for(path)`. Point clients at `base_url`.
    """
    root = tmp_path / "tlc_server_files"
    root.mkdir()
    with FileServer(root).running() as server:
        yield server


@pytest.fixture
def local_dagster_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a `dagster` CLI or `dagster dev` child, as a user's laptop has it.

    A temporary DAGSTER_HOME from the local template, the sample source, steps in the run's process
    and batched event writes (as the `.env` from `scripts/setup` sets), and `taxi_zones`, which
    every day reads, already materialized there.
    """
    home = new_local_home(tmp_path)
    # The test's MLflow store is the one under its data dir, as on a laptop without
    # MLFLOW_TRACKING_URI: a value left in this worker's environment (MLflow exports whatever
    # store a process used) would send the child's runs to another test's store.
    inherited = {name: value for name, value in os.environ.items() if name != "MLFLOW_TRACKING_URI"}
    environment = {
        **inherited,
        "DAGSTER_HOME": str(home),
        "ML_ASSETS_SOURCE": "sample",
        "ML_ASSETS_DATA_DIR": str(tmp_path / "data"),
        "ML_ASSETS_EXECUTOR": "in_process",
        "DAGSTER_EVENT_BATCH_SIZE": "1000",
    }
    with local_instance(home) as instance:
        dg.materialize(
            [taxi_zones],
            resources=build_resources(Settings.from_env(environment)),
            instance=instance,
        )
    return environment
