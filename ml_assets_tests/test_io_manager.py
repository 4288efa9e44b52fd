"""PartitionedFileIOManager: one file per partition, range outputs, window inputs, atomic writes."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from ml_assets.lib.storage import STAMP_KEY, atomic_write, atomic_write_parquet, read_stamp
from ml_assets.resources import build_resources
from ml_assets.resources.parquet_io_manager import PartitionedFileIOManager, Stamped
from ml_assets.settings import Settings

days = dg.DailyPartitionsDefinition(start_date="2021-01-01")
last_three_days = dg.TimeWindowPartitionMapping(start_offset=-2, end_offset=0)

RANGE_TAGS = {
    "dagster/asset_partition_range_start": "2021-01-01",
    "dagster/asset_partition_range_end": "2021-01-03",
}


def day_frame(key: str) -> pl.DataFrame:
    return pl.DataFrame({"day": [key, key], "n": [1, 2]})


@dg.asset
def zones_table() -> pl.DataFrame:
    return pl.DataFrame({"LocationID": [1, 2]})


@dg.asset
def summary_record() -> dict[str, Any]:
    return {"rows": 2, "nested": {"ok": True}}


@dg.asset(partitions_def=days, backfill_policy=dg.BackfillPolicy.single_run())
def daily_rows(context: dg.AssetExecutionContext) -> Any:
    frames = {key: day_frame(key) for key in context.partition_keys}
    return frames if len(frames) > 1 else frames[context.partition_key]


@dg.asset(
    partitions_def=days,
    ins={"daily_rows": dg.AssetIn(partition_mapping=last_three_days)},
)
def rows_in_window(daily_rows: pl.LazyFrame) -> dict[str, Any]:
    collected = daily_rows.collect()
    return {"rows": collected.height, "days": sorted(set(collected["day"]))}


@dg.asset(
    partitions_def=days,
    ins={"daily_rows": dg.AssetIn(partition_mapping=last_three_days)},
)
def rows_by_day(daily_rows: dict[str, pl.DataFrame]) -> dict[str, Any]:
    return {key: frame["day"].to_list() for key, frame in daily_rows.items()}


@dg.asset(partitions_def=days)
def one_day_copy(daily_rows: pl.DataFrame, summary_record: dict[str, Any]) -> pl.DataFrame:
    return daily_rows.with_columns(pl.lit(summary_record["rows"]).alias("summary_rows"))


@pytest.fixture(scope="module")
def instance() -> Iterator[dg.DagsterInstance]:
    """One instance for the module: these tests look at files, not at run history."""
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def io_manager(tmp_path: Path) -> PartitionedFileIOManager:
    return PartitionedFileIOManager(base_dir=str(tmp_path / "assets"))


def run(
    assets: list[dg.AssetsDefinition],
    io_manager: PartitionedFileIOManager,
    instance: dg.DagsterInstance,
    **options: Any,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets, resources={"io_manager": io_manager}, instance=instance, **options
    )


def test_unpartitioned_frames_are_parquet_and_dicts_are_json(
    io_manager: PartitionedFileIOManager, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    run([zones_table, summary_record], io_manager, instance)

    assert pl.read_parquet(tmp_path / "assets" / "zones_table.parquet")["LocationID"].to_list() == [
        1,
        2,
    ]
    assert json.loads((tmp_path / "assets" / "summary_record.json").read_text()) == {
        "nested": {"ok": True},
        "rows": 2,
    }


def test_a_partition_is_one_file_named_by_its_key(
    io_manager: PartitionedFileIOManager, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    run([daily_rows], io_manager, instance, partition_key="2021-01-02")

    assert sorted(p.name for p in (tmp_path / "assets" / "daily_rows").iterdir()) == [
        "2021-01-02.parquet"
    ]
    assert pl.read_parquet(tmp_path / "assets/daily_rows/2021-01-02.parquet").equals(
        day_frame("2021-01-02")
    )


def test_a_range_run_writes_each_partition_of_its_mapping_to_its_own_file(
    io_manager: PartitionedFileIOManager, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    result = run([daily_rows], io_manager, instance, tags=RANGE_TAGS)

    assert result.success
    folder = tmp_path / "assets" / "daily_rows"
    assert sorted(p.name for p in folder.iterdir()) == [
        "2021-01-01.parquet",
        "2021-01-02.parquet",
        "2021-01-03.parquet",
    ]
    for key in ("2021-01-01", "2021-01-02", "2021-01-03"):
        assert pl.read_parquet(folder / f"{key}.parquet").equals(day_frame(key))


def test_a_range_run_that_returns_one_value_fails_clearly(
    io_manager: PartitionedFileIOManager, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    @dg.asset(partitions_def=days, backfill_policy=dg.BackfillPolicy.single_run())
    def lumped(context: dg.AssetExecutionContext) -> pl.DataFrame:
        return day_frame(context.partition_key_range.start)

    with pytest.raises(
        TypeError, match=r"lumped: a run over partitions 2021-01-01\.\.2021-01-03 must"
    ):
        run([lumped], io_manager, instance, tags=RANGE_TAGS)
    assert not (tmp_path / "assets" / "lumped").exists()


def test_a_range_run_missing_a_partition_names_it(
    io_manager: PartitionedFileIOManager, instance: dg.DagsterInstance
) -> None:
    @dg.asset(partitions_def=days, backfill_policy=dg.BackfillPolicy.single_run())
    def partial(context: dg.AssetExecutionContext) -> dict[str, pl.DataFrame]:
        return {key: day_frame(key) for key in context.partition_keys[:2]}

    with pytest.raises(ValueError, match=r"partial: no output for partition\(s\) 2021-01-03"):
        run([partial], io_manager, instance, tags=RANGE_TAGS)


def test_window_inputs_scan_every_partition_lazily_or_by_key(
    io_manager: PartitionedFileIOManager, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    run([daily_rows], io_manager, instance, tags=RANGE_TAGS)

    run(
        [daily_rows, rows_in_window, rows_by_day],
        io_manager,
        instance,
        partition_key="2021-01-03",
        selection=["rows_in_window", "rows_by_day"],
    )

    window = json.loads((tmp_path / "assets/rows_in_window/2021-01-03.json").read_text())
    by_day = json.loads((tmp_path / "assets/rows_by_day/2021-01-03.json").read_text())
    assert window == {"rows": 6, "days": ["2021-01-01", "2021-01-02", "2021-01-03"]}
    assert by_day == {
        "2021-01-01": ["2021-01-01", "2021-01-01"],
        "2021-01-02": ["2021-01-02", "2021-01-02"],
        "2021-01-03": ["2021-01-03", "2021-01-03"],
    }


def test_a_single_partition_input_is_a_frame_and_json_inputs_are_dicts(
    io_manager: PartitionedFileIOManager, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    run([summary_record], io_manager, instance)
    run([daily_rows], io_manager, instance, partition_key="2021-01-02")

    run(
        [daily_rows, summary_record, one_day_copy],
        io_manager,
        instance,
        partition_key="2021-01-02",
        selection=["one_day_copy"],
    )

    copy = pl.read_parquet(tmp_path / "assets/one_day_copy/2021-01-02.parquet")
    assert copy["summary_rows"].to_list() == [2, 2]
    assert copy["day"].to_list() == ["2021-01-02", "2021-01-02"]


def test_a_missing_upstream_partition_is_named(
    io_manager: PartitionedFileIOManager, instance: dg.DagsterInstance
) -> None:
    run([daily_rows], io_manager, instance, partition_key="2021-01-01")
    run([daily_rows], io_manager, instance, partition_key="2021-01-03")

    with pytest.raises(FileNotFoundError) as raised:
        run(
            [daily_rows, rows_in_window],
            io_manager,
            instance,
            partition_key="2021-01-03",
            selection=["rows_in_window"],
        )

    message = str(raised.value)
    assert message.startswith("partition 2021-01-02 of daily_rows has not been materialized")
    assert "materialize it first" in message


def test_a_value_it_cannot_store_is_refused_without_writing(
    io_manager: PartitionedFileIOManager, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    @dg.asset
    def a_list() -> list[int]:
        return [1, 2]

    with pytest.raises(TypeError, match=r"a_list.parquet: cannot store a list"):
        run([a_list], io_manager, instance)
    assert not (tmp_path / "assets").exists() or not any((tmp_path / "assets").iterdir())


def test_a_failed_write_keeps_the_previous_partition_file_and_leaves_no_temp_file(
    io_manager: PartitionedFileIOManager, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    run([daily_rows], io_manager, instance, partition_key="2021-01-01")
    folder = tmp_path / "assets" / "daily_rows"
    before = (folder / "2021-01-01.parquet").read_bytes()

    @dg.asset(name="daily_rows", partitions_def=days)
    def unwritable_rows() -> pl.DataFrame:
        # Python objects cannot be written to parquet: the write fails part way.
        return pl.DataFrame(
            {"day": ["2021-01-01"], "thing": [object()]},
            schema={"day": pl.String, "thing": pl.Object},
        )

    result = run(
        [unwritable_rows], io_manager, instance, partition_key="2021-01-01", raise_on_error=False
    )

    assert not result.success
    assert sorted(p.name for p in folder.iterdir()) == ["2021-01-01.parquet"]
    assert (folder / "2021-01-01.parquet").read_bytes() == before


def test_atomic_write_leaves_the_old_file_or_none_never_half_of_one(tmp_path: Path) -> None:
    target = tmp_path / "out" / "file.parquet"
    atomic_write_parquet(pl.DataFrame({"a": [1]}), target)

    def write_half_then_fail(temp: Path) -> None:
        temp.write_bytes(b"PAR1 half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(tmp_path / "out" / "new.parquet", write_half_then_fail)

    assert sorted(p.name for p in target.parent.iterdir()) == ["file.parquet"]
    assert pl.read_parquet(target)["a"].to_list() == [1]


def test_a_stamp_is_written_into_the_files_footer_with_its_rows(tmp_path: Path) -> None:
    stamped, plain = tmp_path / "stamped.parquet", tmp_path / "plain.parquet"
    stamp = {"cache_key": "abc", "metadata": {"dagster/row_count": 2, "share": 0.5}}

    atomic_write_parquet(day_frame("2021-01-01"), stamped, stamp=stamp)
    atomic_write_parquet(day_frame("2021-01-01"), plain)

    assert read_stamp(stamped) == stamp
    assert read_stamp(plain) is None
    assert pl.read_parquet(stamped).equals(day_frame("2021-01-01"))


def test_a_file_that_is_not_parquet_names_itself_when_its_stamp_is_read(tmp_path: Path) -> None:
    cut = tmp_path / "cut.parquet"
    atomic_write_parquet(day_frame("2021-01-01"), cut, stamp={"cache_key": "abc"})
    cut.write_bytes(cut.read_bytes()[:40])

    with pytest.raises(ValueError, match=r"cut\.parquet: not a readable parquet file"):
        read_stamp(cut)


def test_a_stamp_that_is_not_json_names_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.parquet"
    day_frame("2021-01-01").write_parquet(broken, metadata={STAMP_KEY: "{not json"})

    with pytest.raises(
        ValueError, match=r"broken\.parquet: its footer's `ml_assets` entry is not JSON"
    ):
        read_stamp(broken)


@dg.asset(partitions_def=days, backfill_policy=dg.BackfillPolicy.single_run())
def stamped_rows(context: dg.AssetExecutionContext) -> Any:
    return {
        key: day_frame(key)
        if key == "2021-01-02"
        else Stamped(day_frame(key), {"built_from": f"source of {key}"})
        for key in context.partition_keys
    }


def test_stored_stamps_reads_the_stamp_of_each_stored_day_that_has_one(
    io_manager: PartitionedFileIOManager, instance: dg.DagsterInstance
) -> None:
    assert run([stamped_rows], io_manager, instance, tags=RANGE_TAGS).success
    key = dg.AssetKey("stamped_rows")

    stamps = io_manager.stored_stamps(key, ["2021-01-01", "2021-01-02", "2021-01-03", "2021-01-04"])

    # 01-02 was stored without a stamp; 01-04 was never stored.
    assert stamps == {
        "2021-01-01": {"built_from": "source of 2021-01-01"},
        "2021-01-03": {"built_from": "source of 2021-01-03"},
    }
    stored = pl.read_parquet(Path(io_manager.base_dir) / "stamped_rows" / "2021-01-03.parquet")
    assert stored.equals(day_frame("2021-01-03"))


def test_a_run_logs_the_settings_in_force_once_at_its_start(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    settings = Settings.from_env(
        {
            "ML_ASSETS_SOURCE": "sample",
            "ML_ASSETS_TAXI_TYPE": "yellow",
            "ML_ASSETS_DATA_DIR": str(tmp_path / "data"),
            "MLFLOW_TRACKING_URI": "postgresql://mlflow:hunter2@db.internal/mlflow",
            "ML_ASSETS_EXECUTOR": "in_process",
        }
    )
    io_manager = build_resources(settings)["io_manager"]

    result = run([zones_table, summary_record], io_manager, instance)

    lines = [
        record.user_message
        for record in instance.all_logs(result.run_id)
        if record.user_message.startswith("ml_assets settings in force")
    ]
    assert lines == [
        "ml_assets settings in force: ML_ASSETS_SOURCE=sample, ML_ASSETS_TAXI_TYPE=yellow, "
        f"ML_ASSETS_DATA_DIR={tmp_path / 'data'}, "
        "MLFLOW_TRACKING_URI=postgresql://mlflow:***@db.internal/mlflow, "
        f"ML_ASSETS_EXECUTOR=in_process, DAGSTER_HOME={instance.root_directory}"
    ]


def test_an_output_that_cannot_be_written_fails_at_once_naming_the_asset_and_path(
    tmp_path: Path,
) -> None:
    @dg.asset(
        partitions_def=dg.DailyPartitionsDefinition(start_date="2021-01-01"),
        retry_policy=dg.RetryPolicy(max_retries=3),
    )
    def daily_table() -> pl.DataFrame:
        return pl.DataFrame({"x": [1]})

    base = tmp_path / "assets"
    base.mkdir()
    (base / "daily_table").write_text("a file where the asset's folder must be")
    result = dg.materialize(
        [daily_table],
        partition_key="2021-01-05",
        resources={"io_manager": PartitionedFileIOManager(base_dir=str(base))},
        raise_on_error=False,
    )

    assert not result.success
    events = [event.event_type_value for event in result.all_events]
    assert "STEP_UP_FOR_RETRY" not in events  # waiting would not move the file
    (failure,) = [event for event in result.all_events if event.is_step_failure]
    message = failure.step_failure_data.error.to_string()
    assert "daily_table" in message
    assert str(base / "daily_table") in message
