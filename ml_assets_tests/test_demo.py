"""`ml-assets-demo`: the whole loop for a few days, run as a user runs it, in its own process."""

import os
import subprocess
import sys
from datetime import date
from pathlib import Path
from unittest import mock

import dagster as dg
import pytest

from ml_assets.lib.features import build_trip_features
from ml_assets.lib.sample_source import sample_trips, sample_zones
from ml_assets_tests.conftest import local_instance, new_local_home

DAYS = ["2021-01-01", "2021-01-02", "2021-01-03"]


def test_the_demo_refuses_days_after_the_end_date(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ml_assets.demo import main

    environment = {"ML_ASSETS_END_DATE": "2021-01-02", "DAGSTER_HOME": str(tmp_path)}
    with mock.patch.dict(os.environ, environment):
        code = main(["--start", "2021-01-01", "--end", "2021-01-03"])

    assert code == 2
    assert capsys.readouterr().err == (
        "ml-assets-demo: --end 2021-01-03 is after ML_ASSETS_END_DATE=2021-01-02, the last day "
        "of the partitions\n"
    )


@pytest.mark.slow
def test_demo_runs_the_loop_day_by_day_and_prints_what_each_day_produced(tmp_path: Path) -> None:
    home = new_local_home(tmp_path)
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("ML_ASSETS_", "MLFLOW_", "DAGSTER_"))
    }
    env.update(DAGSTER_HOME=str(home), ML_ASSETS_DATA_DIR=str(tmp_path / "data"))
    work_dir = tmp_path / "cwd"  # no .env here: only the environment above counts
    work_dir.mkdir()

    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from ml_assets.demo import main; sys.exit(main(sys.argv[1:]))",
            "--start",
            DAYS[0],
            "--end",
            DAYS[-1],
        ],
        cwd=work_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        start_new_session=True,
    )

    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.splitlines()
    header = next(number for number, line in enumerate(lines) if line.startswith("day"))
    assert lines[header].split() == [
        "day",
        "trips",
        "features",
        "trained",
        "scored",
        "RMSE",
        "baseline",
        "champion",
        "served",
    ]
    # The legend above the table says what each column is about.
    assert any(line.strip().startswith("scored:") for line in lines[:header])
    rows = {line.split()[0]: line.split() for line in lines[header + 1 : header + 1 + len(DAYS)]}
    assert list(rows) == DAYS
    zones = sample_zones().lazy()
    for number, day in enumerate(DAYS, start=1):
        trips = sample_trips(date.fromisoformat(day))
        kept = build_trip_features(trips.lazy(), zones).collect().height
        assert rows[day][1:4] == [str(trips.height), str(kept), f"v{number}"]
    # Day one: no earlier model, so nothing scored, no champion, no predictions.
    assert rows[DAYS[0]][4:] == ["-"] * 5
    for number, day in enumerate(DAYS[1:], start=1):
        scored, rmse, baseline, champion, served = rows[day][4:]
        assert scored == f"v{number}"  # the model trained through the day before
        assert float(rmse) < float(baseline)
        assert champion in {"v1", f"v{number}"}
        assert served == "v1"  # the first champion serves until a later one was chosen before
    # Dagster's run logs stay in the instance (the UI shows them), not in the terminal.
    assert "STEP_START" not in completed.stderr + completed.stdout
    assert "DEBUG" not in completed.stderr + completed.stdout
    assert f"DAGSTER_HOME={home}" in completed.stdout
    assert (
        f"`ML_ASSETS_END_DATE={DAYS[-1]} dagster dev` shows these days alone;" in completed.stdout
    )

    data_dir = tmp_path / "data"
    assert sorted(p.name for p in (data_dir / "assets" / "raw_trips").iterdir()) == [
        f"{day}.parquet" for day in DAYS
    ]
    assert (data_dir / "mlflow.db").is_file()
    assert not (work_dir / "mlruns").exists()  # MLflow kept everything under the data dir
    with local_instance(home) as instance:
        every_run = instance.get_runs()
        runs = [run for run in every_run if run.job_name != "promotion_job"]
        assert len(runs) == 1 + len(DAYS)  # taxi_zones, then one run per day
        assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
        assert (
            sorted(run.tags["dagster/partition"] for run in runs if "dagster/partition" in run.tags)
            == DAYS
        )
        # Each day then has its promotion decision (a lost gate fails that run only); the first
        # day's decides nothing, there being no challenger.
        promotions = [run for run in every_run if run.job_name == "promotion_job"]
        assert sorted(run.tags["dagster/partition"] for run in promotions) == DAYS
