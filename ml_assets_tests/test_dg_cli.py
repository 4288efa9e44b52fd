"""`dg`, Dagster 1.13's project CLI, works from the repository root as the README says."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from ml_assets.definitions import build_definitions
from ml_assets.settings import Settings
from ml_assets_tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def _dg(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # The repository root is the project; settings point at a temporary data dir and home so a
    # developer's `.env` (whose lines let the environment win) cannot leak into the check.
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path),
        "ML_ASSETS_DATA_DIR": str(tmp_path / "data"),
        "ML_ASSETS_SOURCE": "sample",
    }
    return subprocess.run(
        ["dg", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_dg_check_defs_loads_every_definition(tmp_path: Path) -> None:
    checked = _dg("check", "defs", tmp_path=tmp_path)
    assert checked.returncode == 0, checked.stderr[-3000:]
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr


def test_dg_list_defs_lists_the_asset_graph(tmp_path: Path) -> None:
    listed = _dg("list", "defs", "--json", tmp_path=tmp_path)
    assert listed.returncode == 0, listed.stderr[-3000:]
    definitions = json.loads(listed.stdout)
    # What dg lists is what build_definitions builds.
    built = build_definitions(Settings.from_env({"ML_ASSETS_SOURCE": "sample"}))
    expected = {spec.key.to_user_string() for spec in built.resolve_all_asset_specs()}
    assert {asset["asset_key"] for asset in definitions["assets"]} == expected
    assert {"raw_trips", "duration_model", "model_promotion"} <= expected
    assert {"daily_job", "ml_loop_job", "retrain_job"} <= {
        job["name"] for job in definitions["jobs"]
    }
    assert {"daily_schedule", "training_schedule"} == {
        schedule["name"] for schedule in definitions["schedules"]
    }
