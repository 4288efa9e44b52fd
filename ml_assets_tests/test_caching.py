"""Unchanged partitions are not recomputed; a changed source file or code version recomputes.

The staleness test uses the resolver behind the UI's "stale" badges (a private Dagster API).
"""

import io
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from dagster._core.definitions.data_version import CachingStaleStatusResolver
from dagster._core.loader import LoadingContextForTest

from ml_assets.assets import ingestion
from ml_assets.checks import carry_over
from ml_assets.lib.publication import forget_outdated_cached_month
from ml_assets.lib.sample_source import sample_raw_trips, sample_zones
from ml_assets.resources import build_resources
from ml_assets.resources.parquet_io_manager import PartitionedFileIOManager
from ml_assets.resources.trip_source import TripSource
from ml_assets.settings import Settings
from ml_assets_tests.conftest import range_tags
from ml_assets_tests.graph import ASSET_CHECKS, raw_trips, taxi_zones, trip_features
from ml_assets_tests.http_fixtures import FileServer

NEXT_CODE_VERSION = f"{ingestion.RAW_TRIPS_CODE_VERSION}-next"
"""A code version `raw_trips` has never had."""

FIRST, LAST = "2021-01-04", "2021-01-06"
DAYS = ["2021-01-04", "2021-01-05", "2021-01-06"]
WEEK_LAST = "2021-01-10"


def backfill(
    resources: dict[str, object],
    instance: dg.DagsterInstance,
    with_checks: bool = False,
    last: str = LAST,
) -> dg.ExecuteInProcessResult:
    """raw_trips and trip_features over FIRST..`last` in one run, as a single-run backfill does;
    `with_checks` runs their asset checks too, as the daily and backfill jobs do."""
    return dg.materialize(
        [taxi_zones, raw_trips, trip_features, *(ASSET_CHECKS if with_checks else [])],
        selection=dg.AssetSelection.assets(raw_trips, trip_features),
        resources=resources,
        instance=instance,
        tags=range_tags(FIRST, last),
    )


def partition_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, dict]:
    return {
        event.partition: {key: value.value for key, value in event.materialization.metadata.items()}
        for event in result.get_asset_materialization_events()
        if event.asset_key.to_user_string() == asset
    }


def messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [entry.user_message for entry in instance.all_logs(run_id)]


def stored_files(data_dir: Path, asset: str) -> dict[str, int]:
    """Each stored partition file and when it was last written."""
    return {
        path.stem: path.stat().st_mtime_ns
        for path in sorted((data_dir / "assets" / asset).glob("*.parquet"))
    }


def test_a_second_identical_backfill_keeps_every_partition(
    resources: dict[str, object], settings: Settings, instance: dg.DagsterInstance
):
    dg.materialize([taxi_zones], resources=resources, instance=instance)
    first = backfill(resources, instance)
    written = {
        asset: stored_files(settings.data_dir, asset) for asset in ("raw_trips", "trip_features")
    }

    second = backfill(resources, instance)

    for asset in ("raw_trips", "trip_features"):
        before = partition_metadata(first, asset)
        after = partition_metadata(second, asset)
        assert sorted(after) == DAYS
        assert all(meta["cached"] is False for meta in before.values())
        assert all(meta["cached"] is True for meta in after.values())
        # The kept partitions still report what they hold.
        for day in DAYS:
            assert after[day]["dagster/row_count"] == before[day]["dagster/row_count"] > 1000
            assert after[day]["cache_key"] == before[day]["cache_key"]
            assert after[day]["computed_in_run"] == first.run_id
            assert after[day]["run/cached"] == 3
            assert after[day]["run/recomputed"] == 0
        # Nothing was written again.
        assert stored_files(settings.data_dir, asset) == written[asset]
        assert (
            f"{asset}: all 3 partition(s) unchanged (same source and code version): "
            "nothing recomputed, stored files kept"
        ) in messages(instance, second.run_id)


def test_a_deleted_or_unstamped_day_is_rebuilt_and_only_that_day(
    resources: dict[str, object], settings: Settings, instance: dg.DagsterInstance
):
    dg.materialize([taxi_zones], resources=resources, instance=instance)
    backfill(resources, instance)
    raw_dir = settings.data_dir / "assets" / "raw_trips"
    (raw_dir / "2021-01-04.parquet").unlink()
    # A file without a stamp (written by hand, or before stamps existed) proves nothing.
    pl.read_parquet(raw_dir / "2021-01-05.parquet").write_parquet(raw_dir / "2021-01-05.parquet")

    again = backfill(resources, instance)

    raw = partition_metadata(again, "raw_trips")
    assert {day: meta["cached"] for day, meta in raw.items()} == {
        "2021-01-04": False,
        "2021-01-05": False,
        "2021-01-06": True,
    }
    assert (raw_dir / "2021-01-04.parquet").exists()
    # Rebuilt from the same source, the raw days have the same keys: features are kept.
    features = partition_metadata(again, "trip_features")
    assert all(meta["cached"] is True for meta in features.values())


def test_a_damaged_day_file_is_named_and_rebuilt(
    resources: dict[str, object], settings: Settings, instance: dg.DagsterInstance
):
    dg.materialize([taxi_zones], resources=resources, instance=instance)
    backfill(resources, instance)
    damaged = settings.data_dir / "assets" / "raw_trips" / "2021-01-05.parquet"
    damaged.write_bytes(damaged.read_bytes()[:100])

    again = backfill(resources, instance)

    assert again.success
    raw = partition_metadata(again, "raw_trips")
    assert {day: meta["cached"] for day, meta in raw.items()} == {
        "2021-01-04": True,
        "2021-01-05": False,
        "2021-01-06": True,
    }
    assert pl.read_parquet(damaged).height == raw["2021-01-05"]["dagster/row_count"]
    assert any(
        f"partition 2021-01-05 of raw_trips: {damaged}: not a readable parquet file" in message
        and message.endswith("rebuilding it")
        for message in messages(instance, again.run_id)
    )


def test_a_new_code_version_recomputes_the_asset_and_everything_built_from_it(
    resources: dict[str, object], instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
):
    dg.materialize([taxi_zones], resources=resources, instance=instance)
    backfill(resources, instance)
    monkeypatch.setattr(ingestion, "RAW_TRIPS_CODE_VERSION", NEXT_CODE_VERSION)

    again = backfill(resources, instance)

    for asset in ("raw_trips", "trip_features"):
        assert all(meta["cached"] is False for meta in partition_metadata(again, asset).values())


def month_file(rows_on_the_4th: int | None = None) -> bytes:
    fourth = sample_raw_trips(date(2021, 1, 4))
    if rows_on_the_4th is not None:
        fourth = fourth.head(rows_on_the_4th)
    month = pl.concat([fourth] + [sample_raw_trips(date(2021, 1, day)) for day in (5, 6)])
    buffer = io.BytesIO()
    month.write_parquet(buffer)
    return buffer.getvalue()


def test_a_changed_source_file_recomputes_its_partitions(
    tlc_server: FileServer, tmp_path: Path, instance: dg.DagsterInstance
):
    tlc_server.add_file("green_tripdata_2021-01.parquet", month_file())
    tlc_server.add_file("taxi_zone_lookup.csv", sample_zones().write_csv().encode())
    settings = Settings.from_env(
        {
            "ML_ASSETS_SOURCE": "tlc",
            "ML_ASSETS_DATA_DIR": str(tmp_path / "data"),
            "ML_ASSETS_TLC_BASE_URL": tlc_server.base_url,
            "ML_ASSETS_TLC_ZONE_LOOKUP_URL": tlc_server.url("taxi_zone_lookup.csv"),
        }
    )
    resources = build_resources(settings)
    source: TripSource = resources["trip_source"]  # type: ignore[assignment]
    dg.materialize([taxi_zones], resources=resources, instance=instance)
    first = backfill(resources, instance)
    unchanged = backfill(resources, instance)

    # TLC replaces the month file; the publication sensor notices and drops the local copy.
    tlc_server.add_file("green_tripdata_2021-01.parquet", month_file(rows_on_the_4th=150))
    client = source.client()
    remote = client.head_month("green", date(2021, 1, 1))
    assert forget_outdated_cached_month(client, "green", date(2021, 1, 1), remote)
    changed = backfill(resources, instance)

    assert all(m["cached"] for m in partition_metadata(unchanged, "raw_trips").values())
    raw = partition_metadata(changed, "raw_trips")
    assert all(meta["cached"] is False for meta in raw.values())
    assert raw["2021-01-04"]["dagster/row_count"] == 150
    assert (
        raw["2021-01-05"]["source_version"]
        != partition_metadata(first, "raw_trips")["2021-01-05"]["source_version"]
    )
    assert all(m["cached"] is False for m in partition_metadata(changed, "trip_features").values())
    stored = pl.read_parquet(settings.assets_dir / "raw_trips" / "2021-01-04.parquet")
    assert stored.height == 150
    assert tlc_server.requests_for("/green_tripdata_2021-01.parquet").count("GET") == 2


def stale_causes(
    assets: list, resources: dict[str, object], instance: dg.DagsterInstance, partition: str
) -> dict[str, list[str]]:
    """What the UI shows as the reasons each asset's partition is stale (empty: up to date)."""
    graph = dg.Definitions(assets=assets, resources=resources).resolve_asset_graph()
    resolver = CachingStaleStatusResolver(instance, graph, LoadingContextForTest(instance))
    return {
        name: [cause.reason for cause in resolver.get_stale_causes(dg.AssetKey(name), partition)]
        for name in ("raw_trips", "trip_features")
    }


def test_a_new_code_version_is_stale_in_the_ui_and_then_makes_its_downstream_stale(
    resources: dict[str, object], instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
):
    day = "2021-01-04"
    dg.materialize([taxi_zones], resources=resources, instance=instance)
    dg.materialize(
        [taxi_zones, raw_trips, trip_features],
        selection=["raw_trips", "trip_features"],
        partition_key=day,
        resources=resources,
        instance=instance,
    )
    assets_v1 = [taxi_zones, raw_trips, trip_features]
    raw_trips_v2 = raw_trips.map_asset_specs(
        lambda spec: spec.replace_attributes(code_version=NEXT_CODE_VERSION)
    )
    assets_v2 = [taxi_zones, raw_trips_v2, trip_features]
    monkeypatch.setattr(ingestion, "RAW_TRIPS_CODE_VERSION", NEXT_CODE_VERSION)

    up_to_date = stale_causes(assets_v1, resources, instance, day)
    new_code = stale_causes(assets_v2, resources, instance, day)
    dg.materialize(
        assets_v2,
        selection=["raw_trips"],
        partition_key=day,
        resources=resources,
        instance=instance,
    )
    rebuilt = stale_causes(assets_v2, resources, instance, day)

    assert up_to_date == {"raw_trips": [], "trip_features": []}
    assert new_code == {"raw_trips": ["has a new code version"], "trip_features": []}
    assert rebuilt == {"raw_trips": [], "trip_features": ["has a new dependency data version"]}


def check_metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    return {
        evaluation.check_name: {key: value.value for key, value in evaluation.metadata.items()}
        for evaluation in result.get_asset_check_evaluations()
    }


def test_checks_over_unchanged_days_carry_their_results_over_without_reading_them(
    resources: dict[str, object], instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
):
    # A week: Dagster plans an execution of each check for every day of a range run, so the last
    # completed one lies behind more planned ones than a short range shows.
    dg.materialize([taxi_zones], resources=resources, instance=instance)
    first = backfill(resources, instance, with_checks=True, last=WEEK_LAST)
    computed = check_metadata(first)
    assert len(computed) == 7  # the checks of raw_trips (5) and trip_features (2)
    assert all(meta["cached"] is False for meta in computed.values())

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("a check read stored days although nothing changed")

    monkeypatch.setattr(PartitionedFileIOManager, "load_frames", no_reading)
    second = backfill(resources, instance, with_checks=True, last=WEEK_LAST)

    assert second.success
    carried = check_metadata(second)
    assert set(carried) == set(computed)
    for name, meta in carried.items():
        assert meta["cached"] is True
        assert meta["computed_in_run"] == first.run_id
        assert meta["inputs_fingerprint"] == computed[name]["inputs_fingerprint"]
        assert meta["days"] == f"{FIRST}..{WEEK_LAST}"
    assert {e.check_name: e.passed for e in second.get_asset_check_evaluations()} == {
        name: True for name in computed
    }
    assert any("their results are carried over" in m for m in messages(instance, second.run_id))


@pytest.mark.slow
def test_checks_run_again_when_a_day_or_the_code_changed(
    resources: dict[str, object], instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
):
    dg.materialize([taxi_zones], resources=resources, instance=instance)
    first = backfill(resources, instance, with_checks=True)

    # New raw trips code: every day is recomputed, so every check reads and runs again.
    monkeypatch.setattr(ingestion, "RAW_TRIPS_CODE_VERSION", NEXT_CODE_VERSION)
    after_new_data = check_metadata(backfill(resources, instance, with_checks=True))
    assert all(meta["cached"] is False for meta in after_new_data.values())
    assert all(
        after_new_data[name]["inputs_fingerprint"] != meta["inputs_fingerprint"]
        for name, meta in check_metadata(first).items()
    )

    # The same days again, but different check code.
    monkeypatch.setattr(carry_over, "check_code_version", lambda: "edited")
    after_new_code = check_metadata(backfill(resources, instance, with_checks=True))
    assert all(meta["cached"] is False for meta in after_new_code.values())
