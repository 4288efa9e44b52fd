"""Shared fixtures: an isolated data directory, sample-source settings and resources."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from ml_assets.resources import build_resources
from ml_assets.settings import Settings

SHARED_TLC_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "nyc-tlc"


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
