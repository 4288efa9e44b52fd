"""The local instance's event log: Dagster's SQLite layout, connections kept open between writes."""

import sqlite3
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.event_log import SqliteEventLogStorage
from sqlalchemy.engine import Engine

from ml_assets.local_event_log import OPEN_RUN_DATABASES, PooledSqliteEventLogStorage
from ml_assets_tests.conftest import new_local_home, range_tags


@pytest.fixture
def local_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = new_local_home(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@dg.asset(partitions_def=dg.DailyPartitionsDefinition(start_date="2021-01-01"))
def daily_numbers(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"day": context.partition_key})


def test_the_local_template_records_runs_where_dagsters_default_storage_does(
    local_home: Path,
) -> None:
    with dg.DagsterInstance.from_config(str(local_home)) as instance:
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
        days = ["2021-01-01", "2021-01-02", "2021-01-03"]
        for day in days:
            result = dg.materialize([daily_numbers], instance=instance, partition_key=day)
            assert result.success

    runs_dir = local_home / "history" / "runs"
    assert (runs_dir / "index.db").exists()
    assert (runs_dir / f"{result.run_id}.db").exists()
    # Committed for every other process (the webserver, the daemon) to read, and readable by
    # Dagster's own storage class: an instance can switch back to the default at any time.
    plain = SqliteEventLogStorage(str(runs_dir))
    records = plain.fetch_materializations(dg.AssetKey("daily_numbers"), limit=10).records
    assert sorted(record.partition_key for record in records) == days
    assert dg.DagsterEventType.RUN_SUCCESS in {
        record.event_log_entry.dagster_event_type
        for record in plain.get_records_for_run(result.run_id).records
    }


def test_writes_commit_in_wal_mode_with_synchronous_normal(local_home: Path) -> None:
    with dg.DagsterInstance.from_config(str(local_home)) as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization("numbers"))
        storage = instance.event_log_storage
        assert isinstance(storage, PooledSqliteEventLogStorage)
        with storage.index_connection() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            # 1 = NORMAL (Dagster's own storage leaves SQLite's default, 2 = FULL).
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1
    with sqlite3.connect(local_home / "history" / "runs" / "index.db") as connection:
        assert connection.execute("select count(*) from event_logs").fetchone() == (1,)


def test_open_run_databases_are_bounded_and_closed_on_wipe(local_home: Path) -> None:
    with dg.DagsterInstance.from_config(str(local_home)) as instance:
        run_ids = [
            dg.materialize([daily_numbers], instance=instance, partition_key="2021-01-01").run_id
            for _ in range(OPEN_RUN_DATABASES + 3)
        ]
        storage = instance.event_log_storage
        assert isinstance(storage, PooledSqliteEventLogStorage)
        assert storage.open_run_databases() == OPEN_RUN_DATABASES
        # Every run is still readable, the closed ones reopen on demand.
        assert all(instance.all_logs(run_id) for run_id in run_ids)

        instance.wipe()
        assert storage.open_run_databases() == 0
        assert instance.fetch_materializations(dg.AssetKey("daily_numbers"), limit=1).records == []
        assert dg.materialize(
            [daily_numbers], instance=instance, partition_key="2021-01-02"
        ).success
        assert (
            len(instance.fetch_materializations(dg.AssetKey("daily_numbers"), limit=5).records) == 1
        )


def test_only_a_database_without_tables_goes_through_dagsters_creation_check(
    local_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with dg.DagsterInstance.from_config(str(local_home)) as instance:
        first = dg.materialize([daily_numbers], instance=instance, partition_key="2021-01-01")
    # A later process (a step's, the webserver's) opens the same databases.
    checked: list[str] = []
    dagsters_check = SqliteEventLogStorage._initdb

    def recording_check(
        storage: SqliteEventLogStorage, engine: Engine, for_index_shard: bool = False
    ) -> None:
        checked.append(Path(str(engine.url.database)).name)
        dagsters_check(storage, engine, for_index_shard=for_index_shard)

    monkeypatch.setattr(SqliteEventLogStorage, "_initdb", recording_check)
    with dg.DagsterInstance.from_config(str(local_home)) as instance:
        assert instance.all_logs(first.run_id)
        second = dg.materialize([daily_numbers], instance=instance, partition_key="2021-01-02")
        assert second.success
        assert len(instance.fetch_materializations(daily_numbers.key, limit=5).records) == 2

    # The index and the first run's database are stamped: left as they are. The second run's
    # database is new: created by Dagster's own code, tables and stamp.
    assert checked == [f"{second.run_id}.db"]
    with sqlite3.connect(local_home / "history" / "runs" / f"{second.run_id}.db") as connection:
        assert connection.execute("select count(*) from alembic_version").fetchone() == (1,)


def test_the_template_needs_dagster_home_to_locate_the_event_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = new_local_home(tmp_path)
    with pytest.raises(dg.DagsterInvalidConfigError, match="DAGSTER_HOME"):
        dg.DagsterInstance.from_config(str(home))


@dg.asset(
    partitions_def=dg.DailyPartitionsDefinition(start_date="2021-01-01"),
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def ranged_numbers(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    for day in context.partition_keys:
        context.add_asset_metadata({"day": day}, partition_key=day)
    return dg.MaterializeResult()


RANGE = ["2021-01-01", "2021-01-02", "2021-01-03", "2021-01-04"]


def range_run(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [ranged_numbers],
        instance=instance,
        tags=range_tags(RANGE[0], RANGE[-1]),
    )


def test_batched_writes_record_every_partition_as_single_writes_do(
    local_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[list[str]] = []
    store_batch = PooledSqliteEventLogStorage.store_event_batch

    def spy(storage: PooledSqliteEventLogStorage, events: list) -> None:
        batches.append([event.dagster_event_type.value for event in events])
        store_batch(storage, events)

    monkeypatch.setattr(PooledSqliteEventLogStorage, "store_event_batch", spy)
    with dg.DagsterInstance.from_config(str(local_home)) as instance:
        monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)
        one_by_one = range_run(instance)
        monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")
        batched = range_run(instance)

        # The planned and the finished materializations of the range came as one batch each.
        assert ["ASSET_MATERIALIZATION"] * len(RANGE) in batches
        assert any(set(batch) == {"ASSET_MATERIALIZATION_PLANNED"} for batch in batches)
        for result in (one_by_one, batched):
            assert result.success
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(
                    asset_key=ranged_numbers.key, storage_ids=None, asset_partitions=RANGE
                ),
                limit=20,
            ).records
            of_run = [record for record in records if record.run_id == result.run_id]
            # Storage ids follow the order the events were emitted in, one per partition.
            in_id_order = sorted(of_run, key=lambda record: record.storage_id)
            assert [record.partition_key for record in in_id_order] == RANGE
            for record in of_run:
                metadata = record.asset_materialization.metadata
                assert metadata["day"].value == record.partition_key
            planned = instance.get_records_for_run(
                result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
            ).records
            assert sorted(r.event_log_entry.dagster_event.partition for r in planned) == RANGE
        # Each day's latest materialization is the batched run's event for that very day.
        latest_ids = instance.event_log_storage.get_latest_storage_id_by_partition(
            ranged_numbers.key, dg.DagsterEventType.ASSET_MATERIALIZATION, set(RANGE)
        )
        latest = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=ranged_numbers.key, storage_ids=[*latest_ids.values()]),
            limit=len(RANGE),
        ).records
        assert {record.partition_key: record.run_id for record in latest} == dict.fromkeys(
            RANGE, batched.run_id
        )
        assert {record.partition_key: record.storage_id for record in latest} == latest_ids
        # The asset's record points at the batched run's last day, as after single writes.
        (asset_record,) = instance.get_asset_records([ranged_numbers.key])
        latest = asset_record.asset_entry.last_materialization_record
        assert (latest.run_id, latest.partition_key) == (batched.run_id, RANGE[-1])
        statuses = instance.get_status_by_partition(
            ranged_numbers.key, RANGE, ranged_numbers.partitions_def
        )
        assert set(statuses.values()) == {dg.AssetPartitionStatus.MATERIALIZED}


@dg.asset_check(asset=ranged_numbers)
def ranged_numbers_are_counted() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True, metadata={"counted": 4})


def recorded_check_executions(runs_dir: Path) -> list[tuple[object, ...]]:
    """Every check execution the index holds: what it is, the event it keeps, and its order."""
    with sqlite3.connect(runs_dir / "index.db") as connection:
        rows = connection.execute(
            "select asset_key, check_name, partition, execution_status, evaluation_event "
            "from asset_check_executions order by id"
        ).fetchall()
    recorded = []
    for asset_key, check_name, partition, status, serialized in rows:
        event = dg.deserialize_value(serialized, dg.EventLogEntry)
        recorded.append(
            (asset_key, check_name, partition, status, event.get_dagster_event().event_type_value)
        )
    return recorded


def test_a_range_runs_planned_checks_are_recorded_as_dagsters_storage_records_them(
    local_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")
    plain_home = tmp_path / "dagsters_own"
    plain_home.mkdir()
    with (
        dg.DagsterInstance.from_config(str(local_home)) as pooled,
        dg.DagsterInstance.local_temp(tempdir=str(plain_home)) as plain,
    ):
        assert type(plain.event_log_storage) is SqliteEventLogStorage
        for instance in (pooled, plain):
            result = dg.materialize(
                [ranged_numbers, ranged_numbers_are_counted],
                instance=instance,
                tags=range_tags(RANGE[0], RANGE[-1]),
            )
            assert result.success
        check_key = ranged_numbers_are_counted.check_key
        for instance in (pooled, plain):
            (summary,) = instance.event_log_storage.get_asset_check_summary_records(
                [check_key]
            ).values()
            latest = summary.last_completed_check_execution_record
            assert latest is not None
            assert latest.status.value == "SUCCEEDED"

    # The same rows, in the same order and state, keeping the same events: a planned execution
    # per partition of the run, then the evaluation.
    pooled_rows = recorded_check_executions(local_home / "history" / "runs")
    assert pooled_rows == recorded_check_executions(plain_home / "history" / "runs")
    assert [row[2] for row in pooled_rows if row[3] == "PLANNED"] == RANGE


def test_on_a_dagster_it_was_not_tested_with_it_steps_aside_with_one_warning_line(
    local_home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from ml_assets import local_event_log

    monkeypatch.setattr(local_event_log, "TESTED_WITH_DAGSTER", "0.0.1")
    with (
        caplog.at_level("WARNING", logger="ml_assets.local_event_log"),
        dg.DagsterInstance.from_config(str(local_home)) as instance,
    ):
        storage = instance.event_log_storage
        assert type(storage) is SqliteEventLogStorage
        result = dg.materialize([daily_numbers], instance=instance, partition_key="2021-01-02")
        assert result.success
        assert instance.get_materialized_partitions(daily_numbers.key) == {"2021-01-02"}
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1
    assert "\n" not in warnings[0]
    assert "steps aside for Dagster's SqliteEventLogStorage" in warnings[0]
    assert f"this is Dagster {dg.__version__}" in warnings[0]
    # The same files: the pooled storage reads what Dagster's wrote.
    monkeypatch.setattr(local_event_log, "TESTED_WITH_DAGSTER", dg.__version__)
    with dg.DagsterInstance.from_config(str(local_home)) as instance:
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
        assert instance.get_materialized_partitions(daily_numbers.key) == {"2021-01-02"}


def test_the_storage_runs_only_on_the_dagster_it_was_tested_with() -> None:
    from ml_assets.local_event_log import TESTED_WITH_DAGSTER, step_aside_reason

    assert step_aside_reason(TESTED_WITH_DAGSTER) is None
    assert step_aside_reason("1.14.0") == (
        f"it was tested with Dagster {TESTED_WITH_DAGSTER}, this is Dagster 1.14.0"
    )
    # The project pins the Dagster it was tested with.
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert f'"dagster=={TESTED_WITH_DAGSTER}"' in pyproject
