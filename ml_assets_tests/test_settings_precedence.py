"""One precedence rule for every entry point: the environment wins, `.env` fills in the rest.

Dagster's CLI loads `.env` over the environment; the `.env` that `scripts/write-env` (run by
`scripts/setup`) writes has `NAME=${NAME:-value}` lines, which python-dotenv expands from the
environment first, so Dagster's CLI and `ml-assets-demo` agree. A run logs which values won.
"""

import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import dagster as dg
import pytest

from ml_assets.demo import load_env_file
from ml_assets_tests.conftest import REPO_ROOT, local_instance, new_local_home
from ml_assets_tests.processes import default_signal_handling

WRITE_ENV = REPO_ROOT / "scripts" / "write-env"


def _write_env(folder: Path) -> str:
    completed = subprocess.run(
        [str(WRITE_ENV), str(folder)], capture_output=True, text=True, timeout=60, check=True
    )
    return completed.stdout


def _without_settings() -> dict[str, str]:
    """This process's environment without any ml_assets, MLflow or Dagster variable."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("ML_ASSETS_", "MLFLOW_", "DAGSTER_"))
    }


def test_the_env_file_lets_the_environment_win_and_setup_never_overwrites_it(
    tmp_path: Path,
) -> None:
    assert "Wrote" in _write_env(tmp_path)
    lines = [line for line in (tmp_path / ".env").read_text().splitlines() if line[:1].isupper()]
    assert lines == [
        f'DAGSTER_HOME="${{DAGSTER_HOME:-{tmp_path}/.dagster_home}}"',
        f'ML_ASSETS_DATA_DIR="${{ML_ASSETS_DATA_DIR:-{tmp_path}/data}}"',
        "ML_ASSETS_SOURCE=${ML_ASSETS_SOURCE:-sample}",
        "ML_ASSETS_EXECUTOR=${ML_ASSETS_EXECUTOR:-in_process}",
        "DAGSTER_EVENT_BATCH_SIZE=${DAGSTER_EVENT_BATCH_SIZE:-1000}",
    ]
    assert (tmp_path / ".dagster_home" / "dagster.yaml").is_file()

    # Run again: nothing is rewritten, and nothing to say about a .env that already lets the
    # environment win.
    before = (tmp_path / ".env").read_text()
    assert _write_env(tmp_path) == ""
    assert (tmp_path / ".env").read_text() == before


def test_setup_names_the_plain_lines_of_an_existing_env_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "# an older .env\nDAGSTER_HOME=/srv/dagster\nexport ML_ASSETS_SOURCE=sample\n"
        "ML_ASSETS_EXECUTOR=${ML_ASSETS_EXECUTOR:-in_process}\n"
    )

    said = _write_env(tmp_path)

    assert "plain lines overrule the environment for: DAGSTER_HOME ML_ASSETS_SOURCE." in said
    assert "ML_ASSETS_EXECUTOR" not in said
    assert (tmp_path / ".env").read_text().startswith("# an older .env\n")


def test_ml_assets_demo_fills_in_from_env_only_what_the_environment_leaves_unset(
    tmp_path: Path,
) -> None:
    _write_env(tmp_path)
    with mock.patch.dict(os.environ, clear=True):
        os.environ.update(ML_ASSETS_SOURCE="tlc", DAGSTER_HOME="/srv/dagster")

        load_env_file(tmp_path)

        assert os.environ["ML_ASSETS_SOURCE"] == "tlc"
        assert os.environ["DAGSTER_HOME"] == "/srv/dagster"
        assert os.environ["ML_ASSETS_DATA_DIR"] == f"{tmp_path}/data"
        assert os.environ["ML_ASSETS_EXECUTOR"] == "in_process"


@pytest.mark.slow
def test_dagster_cli_lets_the_environment_win_over_the_env_file_and_logs_what_won(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    _write_env(project)
    home = new_local_home(tmp_path)
    data_dir = tmp_path / "shell_data"
    # Set in the shell: DAGSTER_HOME and the data directory. Left to .env: the source and the
    # executor.
    env = {**_without_settings(), "DAGSTER_HOME": str(home), "ML_ASSETS_DATA_DIR": str(data_dir)}

    completed = subprocess.run(
        [
            *(sys.executable, "-m", "dagster", "asset", "materialize"),
            *("-m", "ml_assets.definitions", "--select", "taxi_zones"),
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=default_signal_handling,
    )

    assert completed.returncode == 0, completed.stderr[-3000:]
    assert (data_dir / "assets" / "taxi_zones.parquet").is_file()
    assert not (project / "data").exists()
    assert not (project / ".dagster_home" / "storage").exists()
    with local_instance(home) as instance:
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS
        logged = [
            record.user_message
            for record in instance.all_logs(run.run_id)
            if record.user_message.startswith("ml_assets settings in force")
        ]
    assert logged == [
        "ml_assets settings in force: ML_ASSETS_SOURCE=sample, ML_ASSETS_TAXI_TYPE=green, "
        f"ML_ASSETS_DATA_DIR={data_dir}, MLFLOW_TRACKING_URI=sqlite:///{data_dir}/mlflow.db, "
        f"ML_ASSETS_EXECUTOR=in_process, DAGSTER_HOME={home}"
    ]


@pytest.mark.slow
def test_ml_assets_demo_names_an_invalid_setting_in_one_line(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", "import sys; from ml_assets.demo import main; sys.exit(main([]))"],
        cwd=tmp_path,  # no .env here
        env={
            **_without_settings(),
            "DAGSTER_HOME": str(new_local_home(tmp_path)),
            "ML_ASSETS_TAXI_TYPE": "purple",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert completed.returncode == 2
    assert completed.stderr == (
        "ml-assets-demo: ML_ASSETS_TAXI_TYPE='purple': expected one of green, yellow\n"
    )
