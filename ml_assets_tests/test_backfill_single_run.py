"""A date range of raw_trips and trip_features is one run: one file and one event per day."""

import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from ml_assets.settings import Settings
from ml_assets_tests.conftest import local_instance, range_tags
from ml_assets_tests.graph import raw_trips, taxi_zones, trip_features

DAYS = [f"2021-01-0{day}" for day in range(1, 8)]


def test_a_range_run_stores_and_reports_each_partition_on_its_own(
    resources: dict[str, object], settings: Settings, instance: dg.DagsterInstance
):
    dg.materialize([taxi_zones], resources=resources, instance=instance)

    result = dg.materialize(
        [taxi_zones, raw_trips, trip_features],
        selection=["raw_trips", "trip_features"],
        resources=resources,
        instance=instance,
        tags=range_tags(DAYS[0], DAYS[-1]),
    )

    assert result.success
    for asset in ("raw_trips", "trip_features"):
        events = [
            event.materialization
            for event in result.get_asset_materialization_events()
            if event.asset_key.to_user_string() == asset
        ]
        assert sorted(event.partition for event in events) == DAYS
        for event in events:
            stored = pl.read_parquet(settings.assets_dir / asset / f"{event.partition}.parquet")
            # Row counts are the partition's own, not the range's total.
            assert event.metadata["dagster/row_count"].value == stored.height
            assert event.metadata["run/partitions"].value == len(DAYS)
        assert len({event.metadata["dagster/row_count"].value for event in events}) > 1


@pytest.mark.slow
def test_the_cli_backfills_a_range_in_one_run(tmp_path: Path, local_dagster_env: dict[str, str]):
    environment = local_dagster_env
    home = Path(environment["DAGSTER_HOME"])
    settings = Settings.from_env(environment)

    completed = subprocess.run(
        [
            *(sys.executable, "-m", "dagster", "asset", "materialize"),
            *("-m", "ml_assets.definitions", "--select", "raw_trips,trip_features"),
            *("--partition-range", f"{DAYS[0]}...{DAYS[-1]}"),
        ],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=400,
        start_new_session=True,
    )

    assert completed.returncode == 0, completed.stderr[-3000:]
    for asset in ("raw_trips", "trip_features"):
        stored = sorted(path.stem for path in (settings.assets_dir / asset).glob("*.parquet"))
        assert stored == DAYS
    with local_instance(home) as instance:
        runs = [run for run in instance.get_runs() if "raw_trips" in str(run.asset_selection)]
        assert len(runs) == 1
        assert runs[0].tags["dagster/asset_partition_range_start"] == DAYS[0]
        assert runs[0].tags["dagster/asset_partition_range_end"] == DAYS[-1]
        for asset in ("raw_trips", "trip_features"):
            records = instance.fetch_materializations(dg.AssetKey(asset), limit=100).records
            assert sorted(record.partition_key for record in records) == DAYS
            assert {record.run_id for record in records} == {runs[0].run_id}
