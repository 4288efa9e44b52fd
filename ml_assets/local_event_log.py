"""Dagster's SQLite event log for the local instance, with its database connections kept open.

Why this module uses Dagster's internals: Dagster has no public hook into how its SQLite event log
connects and commits, and this is the one place in ml_assets that reaches past the public API.
Everything private is here, and it cannot break an instance: on a Dagster version other than the
one it was tested with (`TESTED_WITH_DAGSTER`), or if an internal it needs has moved, it steps
aside for Dagster's own `SqliteEventLogStorage` with one warning line. To turn it off, delete the
`event_log_storage` block from `$DAGSTER_HOME/dagster.yaml`: the files are Dagster's own.

What it changes: Dagster's `SqliteEventLogStorage` creates a new SQLAlchemy engine and a new
SQLite connection for every write and closes them again, and commits with `synchronous=FULL`.
Every event of a run (a materialization is written twice: to the run's database and to the
cross-run index) then costs about 8 ms here; a 90-day backfill of two assets records some 400
events, over 3 s of bookkeeping for 1.5 s of work. This subclass keeps one engine per database,
so connections are reused between writes, and commits in WAL mode with `synchronous=NORMAL`,
SQLite's recommended setting for WAL: a crash of the process loses nothing; a power cut may lose
the last commits, never the database. The same event then costs about 1.5 ms (`python -m bench
backfill` compares it with Dagster's own storage). With `DAGSTER_EVENT_BATCH_SIZE` set, Dagster
hands a range run's materializations (and a run's planned ones) over as one batch, which is
written in one transaction per database, each event serialized once for both; a range run's
planned check executions, a row per day and check, are likewise written with their event
serialized once (about 20 ms less per check of a 90-day run when the run is created).

One module though past 250 lines: it is the one concern of how the local event log writes, and
the one home of the Dagster internals that this takes.

Everything else, including the file layout under `$DAGSTER_HOME/history/runs`, is Dagster's, so
an instance can switch between this class and Dagster's default in either direction. Production
instances use Postgres (`deploy/dagster-production.yaml`), not this.
"""

import contextlib
import logging
import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dagster
import sqlalchemy as db

# Dagster's own storage, named by the same module path that Dagster's instance docs configure it
# with; the fallback when the pooled storage steps aside.
from dagster._core.storage.event_log import SqliteEventLogStorage
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

TESTED_WITH_DAGSTER = "1.13.27"
"""The Dagster release this storage was tested with; on any other it steps aside."""

try:
    from dagster._core.storage.asset_check_execution_record import (
        AssetCheckExecutionRecordStatus,
    )
    from dagster._core.storage.event_log.schema import (
        AssetCheckExecutionsTable,
        SqlEventLogStorageTable,
    )
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME
    from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS, create_db_conn_string
    from dagster._serdes import ConfigurableClassData

    _INTERNALS_MISSING: str | None = None
except ImportError as missing:  # a Dagster release that moved them: step aside, never fail
    _INTERNALS_MISSING = str(missing)

logger = logging.getLogger(__name__)


def step_aside_reason(dagster_version: str = dagster.__version__) -> str | None:
    """Why the pooled storage must not run on this Dagster, or None when it may."""
    if _INTERNALS_MISSING is not None:
        return f"a Dagster internal it needs is missing ({_INTERNALS_MISSING})"
    if dagster_version != TESTED_WITH_DAGSTER:
        return (
            f"it was tested with Dagster {TESTED_WITH_DAGSTER}, this is Dagster {dagster_version}"
        )
    return None


OPEN_RUN_DATABASES = 8
"""Run databases whose connections stay open at once (besides the index).

A run writes to its own database and the index; the webserver reads many runs' databases, so
the least recently used ones are closed to bound the open files of a long-lived process.
"""


_BATCHED_TYPES = frozenset(
    {
        dagster.DagsterEventType.ASSET_MATERIALIZATION,
        dagster.DagsterEventType.ASSET_OBSERVATION,
        dagster.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
    }
)
"""Events mirrored into the index database, where batching saves most: stored a batch at once."""


def _sqlite_engine(url: str) -> Engine:
    engine = db.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})

    @event.listens_for(engine, "connect")
    def _synchronous_normal(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    return engine


def _stamped(connection: Connection) -> bool:
    """Whether the database records an alembic revision: Dagster stamps it once it has tables."""
    if not connection.dialect.has_table(connection, "alembic_version"):
        return False
    return (
        connection.execute(db.text("SELECT version_num FROM alembic_version")).first() is not None
    )


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log storage, reusing its connections between writes.

    Configured in `dagster.yaml` with the Dagster home, under which the databases live exactly
    where Dagster's default storage keeps them:

        event_log_storage:
          module: ml_assets.local_event_log
          class: PooledSqliteEventLogStorage
          config:
            dagster_home:
              env: DAGSTER_HOME
    """

    def __init__(self, dagster_home: str, inst_data: "ConfigurableClassData | None" = None) -> None:
        runs_dir = os.path.join(dagster_home, "history", "runs")
        # Set before the base class initializes the index database through `_connect`.
        self._index_engine = _sqlite_engine(create_db_conn_string(runs_dir, INDEX_SHARD_NAME))
        self._run_engines: OrderedDict[str, Engine] = OrderedDict()
        super().__init__(runs_dir, inst_data=inst_data)

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        import dagster as dg

        return {
            "dagster_home": dg.Field(
                dg.StringSource,
                description="The Dagster home; event logs are kept in its history/runs folder.",
            )
        }

    @classmethod
    def from_config_value(  # ty: ignore[invalid-method-override]
        cls, inst_data: "ConfigurableClassData | None", config_value: Mapping[str, Any]
    ) -> SqliteEventLogStorage:
        """The pooled storage, or Dagster's own on a Dagster it was not tested with."""
        reason = step_aside_reason()
        if reason is not None:
            runs_dir = os.path.join(config_value["dagster_home"], "history", "runs")
            logger.warning(
                f"ml_assets.local_event_log steps aside for Dagster's SqliteEventLogStorage: "
                f"{reason}"
            )
            return SqliteEventLogStorage(runs_dir, inst_data=inst_data)
        return cls(dagster_home=config_value["dagster_home"], inst_data=inst_data)

    def _engine(self, shard: str) -> Engine:
        if shard == INDEX_SHARD_NAME:
            return self._index_engine
        engine = self._run_engines.get(shard)
        if engine is not None:
            self._run_engines.move_to_end(shard)
            return engine
        engine = _sqlite_engine(self.conn_string_for_shard(shard))
        self._run_engines[shard] = engine
        while len(self._run_engines) > OPEN_RUN_DATABASES:
            self._run_engines.popitem(last=False)[1].dispose()
        return engine

    def _initdb(self, engine: Engine, for_index_shard: bool = False) -> None:
        """Create the tables of a database that has none, as Dagster's storage does.

        Dagster's check learns the head migration by loading every alembic script of its event
        log, 0.1 to 0.3 s once per process, although it creates nothing when the database is
        stamped with any revision. Every step process of a run opens the index and the run's
        database, which the run's own process created a moment before: a stamped database is
        left as it is without that check, the rest go through Dagster's.
        """
        with engine.connect() as connection:
            if _stamped(connection):
                return
        super()._initdb(engine, for_index_shard=for_index_shard)

    @contextlib.contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as connection, connection.begin():
                yield connection

    def store_event_batch(self, events: Sequence[dagster.EventLogEntry]) -> None:
        """Store a batch of events (Dagster sends one when `DAGSTER_EVENT_BATCH_SIZE` is set).

        The materializations of a range run's output, and the planned materializations of a run,
        are written in one transaction per database instead of two per event, as Dagster's
        Postgres storage does, by one executemany per database; every other event of the batch
        is stored on its own, after them.
        """
        mirrored = [event for event in events if event.dagster_event_type in _BATCHED_TYPES]
        if mirrored:
            # Each event is serialized once, for both databases, and inserted by one statement
            # compiled once per database (an executemany), not one statement built per event.
            rows = [self._event_to_row(event) for event in mirrored]
            with self.run_connection(mirrored[0].run_id) as connection:
                connection.execute(SqlEventLogStorageTable.insert(), rows)
            with self.index_transaction() as connection:
                inserted = connection.execute(
                    SqlEventLogStorageTable.insert().returning(
                        SqlEventLogStorageTable.c.id, sort_by_parameter_order=True
                    ),
                    rows,
                )
                event_ids = [row.id for row in inserted]
                self._store_asset_event_tags(connection, mirrored, event_ids)
                # The asset table keeps each asset's latest event: only the last one counts.
                latest = {
                    event.get_dagster_event().asset_key: (event, event_id)
                    for event, event_id in zip(mirrored, event_ids, strict=True)
                }
                for event, event_id in latest.values():
                    self._store_asset_event(connection, event, event_id)
        for event in events:
            if event.dagster_event_type not in _BATCHED_TYPES:
                self.store_event(event)

    def _store_asset_check_evaluation_planned(
        self, event: dagster.EventLogEntry, event_id: int | None
    ) -> None:
        """Record a planned check execution for each partition of the run, as Dagster does, with
        the event serialized once and one statement compiled once for all the rows.

        Dagster serializes the same event again for each partition and builds one statement with
        a row per partition: for a 90-day range run, 90 serializations and a statement of 90 rows
        per check, about a third of what Dagster spends recording a re-run over unchanged inputs.
        """
        # An ASSET_CHECK_EVALUATION_PLANNED event: Dagster calls this for no other.
        planned: Any = event.get_dagster_event().event_specific_data
        row = {
            "asset_key": planned.asset_key.to_string(),
            "check_name": planned.check_name,
            "run_id": event.run_id,
            "execution_status": AssetCheckExecutionRecordStatus.PLANNED.value,
            "evaluation_event": dagster.serialize_value(event),
            "evaluation_event_timestamp": self._event_insert_timestamp(event),
            "evaluation_event_storage_id": event_id,
        }
        subset = planned.partitions_subset
        partitions = subset.get_partition_keys() if subset else [None]
        with self.index_connection() as connection:
            connection.execute(
                AssetCheckExecutionsTable.insert(),
                [{**row, "partition": partition} for partition in partitions],
            )

    def has_table(self, table_name: str) -> bool:
        # Dagster asks this for every asset event it stores, while it holds an index connection
        # (and the lock `_connect` takes): a second pooled connection, not a new engine each time.
        with self._index_engine.connect() as connection:
            return bool(connection.dialect.has_table(connection, table_name))

    def open_run_databases(self) -> int:
        """How many run databases this process keeps connections to (besides the index)."""
        return len(self._run_engines)

    def _dispose_engines(self) -> None:
        with self._db_lock:
            for engine in self._run_engines.values():
                engine.dispose()
            self._run_engines.clear()
            self._index_engine.dispose()

    def wipe(self) -> None:
        # Wiping deletes the run databases: connections must not outlive their files.
        self._dispose_engines()
        super().wipe()

    def dispose(self) -> None:
        self._dispose_engines()
        super().dispose()
