"""The production instance template on the local PostgreSQL: the daily loop and a 30-day backfill
whose runs the daemon launches several at a time, next to the daily runs, with no lock errors and
every materialization recorded once."""

import subprocess
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest

from ml_assets.resources import build_resources
from ml_assets.settings import Settings
from ml_assets_tests.graph import taxi_zones
from ml_assets_tests.production_services import (
    child_environment,
    instance_environment,
    postgres_database,
    production_dagster_home,
    start_service,
    stop_service,
    wait_for,
    workspace_file,
)

BACKFILL_START = date(2021, 1, 3)
BACKFILL_DAYS = 30
DAILY_DAYS = ["2021-01-01", "2021-01-02"]
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals in progress at one moment."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    in_progress = peak = 0
    for _, change in edges:
        in_progress += change
        peak = max(peak, in_progress)
    return peak


def _partitions_materialized(instance: dg.DagsterInstance, asset: str) -> Counter[str]:
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records
    return Counter(record.asset_materialization.partition for record in records)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_daily_loop_and_parallel_backfill_on_postgres(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backfill_days = [(BACKFILL_START + timedelta(days=n)).isoformat() for n in range(BACKFILL_DAYS)]
    data_dir = tmp_path / "data"
    with postgres_database() as database:
        home = production_dagster_home(tmp_path / "dagster_home")
        instance_env = instance_environment(home, database)
        env = child_environment(
            **instance_env,
            ML_ASSETS_SOURCE="sample",
            ML_ASSETS_DATA_DIR=str(data_dir),
            # One process per run: on two cores the point is many runs at once, not many steps.
            ML_ASSETS_EXECUTOR="in_process",
        )
        workspace = workspace_file(tmp_path / "workspace.yaml")
        for key, value in instance_env.items():
            monkeypatch.setenv(key, value)

        daemon = start_service(
            ["dagster-daemon", "run", "-w", str(workspace)], env, tmp_path / "daemon.log", tmp_path
        )
        try:
            with dg.DagsterInstance.get() as instance:
                assert type(instance.run_storage).__name__ == "PostgresRunStorage"
                assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
                settings = Settings.from_env(
                    {"ML_ASSETS_SOURCE": "sample", "ML_ASSETS_DATA_DIR": str(data_dir)}
                )
                zones = dg.materialize(
                    [taxi_zones],
                    resources=build_resources(settings),
                    instance=instance,
                )
                assert zones.success

                # 30 queued runs, one per day; the daemon starts them as slots free up.
                subprocess.run(
                    [
                        *(
                            "dagster",
                            "job",
                            "backfill",
                            "-w",
                            str(workspace),
                            "-j",
                            "ingestion_job",
                        ),
                        *("--from", backfill_days[0], "--to", backfill_days[-1], "--noprompt"),
                    ],
                    env=env,
                    cwd=tmp_path,
                    check=True,
                    capture_output=True,
                    timeout=300,
                )
                # Meanwhile the whole daily loop, day after day, writes to the same instance.
                for day in DAILY_DAYS:
                    daily = subprocess.run(
                        [
                            *("dagster", "job", "execute", "-m", "ml_assets.definitions"),
                            *("-j", "ml_loop_job", "--tags", f'{{"dagster/partition": "{day}"}}'),
                        ],
                        env=env,
                        cwd=tmp_path,
                        capture_output=True,
                        text=True,
                        timeout=300,
                    )
                    assert daily.returncode == 0, daily.stdout[-3000:] + daily.stderr[-3000:]

                backfill_filter = dg.RunsFilter(job_name="ingestion_job")

                def backfill_finished() -> bool:
                    runs = instance.get_runs(filters=backfill_filter)
                    return len(runs) == BACKFILL_DAYS and all(r.status in FINISHED for r in runs)

                # About two minutes on two idle cores (each run is a new process loading the code);
                # the bound is for busy machines.
                wait_for(backfill_finished, timeout=1200, what="the 30 backfill runs to finish")

                backfill_runs = instance.get_run_records(filters=backfill_filter)
                assert sorted(r.dagster_run.tags["dagster/partition"] for r in backfill_runs) == (
                    backfill_days
                )
                failed = [r.dagster_run for r in backfill_runs if not r.dagster_run.is_success]
                assert not failed, [(run.tags["dagster/partition"], run.status) for run in failed]
                # Several runs in progress at once (from launch to end: starting processes write to
                # the event log too), never more than the template's backfill limit (3).
                in_progress = []
                for record in backfill_runs:
                    (launch,) = instance.all_logs(
                        record.dagster_run.run_id, of_type=dg.DagsterEventType.RUN_STARTING
                    )
                    in_progress.append((launch.timestamp, record.end_time))
                peak = _max_overlap(in_progress)
                assert 2 <= peak <= 3

                daily_runs = instance.get_runs(filters=dg.RunsFilter(job_name="ml_loop_job"))
                assert sorted(run.tags["dagster/partition"] for run in daily_runs) == DAILY_DAYS
                assert all(run.is_success for run in daily_runs)

                every_day = DAILY_DAYS + backfill_days
                for asset in ("raw_trips", "trip_features"):
                    assert _partitions_materialized(instance, asset) == Counter(every_day), asset
                    stored = sorted(path.stem for path in (data_dir / "assets" / asset).iterdir())
                    assert stored == every_day
                assert _partitions_materialized(instance, "duration_model") == Counter(DAILY_DAYS)
                assert _partitions_materialized(instance, "model_evaluation") == Counter(DAILY_DAYS)

                messages = [
                    entry.message or ""
                    for run in instance.get_runs()
                    for entry in instance.all_logs(run.run_id)
                ]
                assert not [m for m in messages if "database is locked" in m.lower()]
        finally:
            stop_service(daemon)
        assert "database is locked" not in (tmp_path / "daemon.log").read_text().lower()
