"""Shared fixtures: an isolated data directory, sample-source settings and resources."""

import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from ml_assets.resources import build_resources
from ml_assets.settings import Settings
from ml_assets_tests.http_fixtures import FileServer

SHARED_TLC_DIR = Path(
    os.environ.get(
        "ML_ASSETS_SHARED_TLC_DIR",
        Path(__file__).resolve().parents[2] / "shared" / "data" / "nyc-tlc",
    )
)
"""The real TLC files (green 2021-01..03, zone lookup); `ML_ASSETS_SHARED_TLC_DIR` overrides it."""


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
