"""Damaged variants of the real TLC files, and a `dagster` CLI run against a loopback TLC host.

Used by `test_bad_inputs.py`. Everything here is plain: polars and pyarrow for the files, a
`subprocess` for the CLI, the instance's event log for what a run did. The variants are made from
a small but valid month file (the real January 2021 green trips picked up on Jan 1-3, plus the few
stray trips of other years that TLC files hold), so a CLI run over one day takes seconds.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl

from ml_assets_tests.conftest import local_instance, new_local_home
from ml_assets_tests.http_fixtures import FileServer
from ml_assets_tests.processes import default_signal_handling

MONTH_FILE = "green_tripdata_2021-01.parquet"
ZONES_FILE = "taxi_zone_lookup.csv"
DAY = "2021-01-02"
"""The partition every case runs: a day in the middle of the small month file."""

LAST_DAY_KEPT = date(2021, 1, 3)
"""The small month file holds the trips picked up up to and including this day."""

CLI_TIMEOUT_SECONDS = 180
"""A run that retries a permanent error three times takes about 30 s; anything past this hangs."""

# The cleaning rules of `trip_features`, restated here so the expected counts do not come from the
# code under test: durations of 1 to 60 minutes, distances of 0 to 100 miles, zone IDs 1..265.
_MIN_MINUTES, _MAX_MINUTES = 1.0, 60.0
_MAX_MILES = 100.0
_MIN_ZONE, _MAX_ZONE = 1, 265


# The files ------------------------------------------------------------------------------------


def small_month(full_month: Path) -> pl.DataFrame:
    """The trips of `full_month` picked up before Jan 4: a valid month file, 5% of the size."""
    trips = pl.read_parquet(full_month)
    return trips.filter(pl.col("lpep_pickup_datetime") < datetime(2021, 1, 4))


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@dataclass(frozen=True)
class DayCounts:
    """What a day of a month file holds, counted with polars straight from the TLC columns."""

    raw: int
    """Trips picked up on the day."""
    kept: int
    """Those the cleaning rules of `trip_features` keep."""


def day_counts(month: pl.DataFrame, day: str) -> DayCounts:
    start = datetime.fromisoformat(day)
    on_day = month.filter(
        (pl.col("lpep_pickup_datetime") >= start)
        & (pl.col("lpep_pickup_datetime") < start + timedelta(days=1))
    )
    minutes = (
        pl.col("lpep_dropoff_datetime") - pl.col("lpep_pickup_datetime")
    ).dt.total_microseconds() / 60e6
    kept = on_day.filter(
        minutes.is_between(_MIN_MINUTES, _MAX_MINUTES)
        & pl.col("trip_distance").is_between(0.0, _MAX_MILES)
        & pl.col("PULocationID").is_between(_MIN_ZONE, _MAX_ZONE)
        & pl.col("DOLocationID").is_between(_MIN_ZONE, _MAX_ZONE)
    )
    return DayCounts(raw=on_day.height, kept=kept.height)


# Month variants: each takes the good small month and returns the bytes a damaged host serves.


def truncated(good: pl.DataFrame) -> bytes:
    """The first half of the file: no footer. Served whole (Content-Length matches), so no
    transfer error tells it apart; only reading it does."""
    content = parquet_bytes(good)
    return content[: len(content) // 2]


def html_page(good: pl.DataFrame) -> bytes:
    """What a proxy or a CDN error page sends with status 200."""
    return (
        b"<!DOCTYPE html>\n<html><head><title>Access Denied</title></head>\n"
        b"<body><h1>Access Denied</h1><p>You don't have permission to access this object."
        b"</p></body></html>\n"
    )


def empty_file(good: pl.DataFrame) -> bytes:
    return b""


def zero_rows(good: pl.DataFrame) -> bytes:
    """A valid parquet file with every column and no rows."""
    return parquet_bytes(good.head(0))


def distance_missing(good: pl.DataFrame) -> bytes:
    """The required column trip_distance dropped."""
    return parquet_bytes(good.drop("trip_distance"))


def distance_as_words(good: pl.DataFrame) -> bytes:
    """trip_distance as strings of words ("two miles"), as a hand-made export might hold."""
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    miles = pl.col("trip_distance").round(0).cast(pl.Int64).clip(0, 10)
    spelled = miles.replace_strict(list(range(10)), words, default="many", return_dtype=pl.String)
    return parquet_bytes(good.with_columns((spelled + " miles").alias("trip_distance")))


def distance_all_null(good: pl.DataFrame) -> bytes:
    """trip_distance kept as a float column, every value null (a dtype, so not polars' Null)."""
    return parquet_bytes(good.with_columns(pl.lit(None, dtype=pl.Float64).alias("trip_distance")))


def dropoff_before_pickup(good: pl.DataFrame) -> bytes:
    """Three trips in five dropped off before they were picked up (the duration mirrored).

    Pickups stay where they were, so every day holds the same trips as the good file.
    """
    duration = pl.col("lpep_dropoff_datetime") - pl.col("lpep_pickup_datetime")
    mirrored = pl.col("lpep_pickup_datetime") - duration - pl.duration(minutes=1)
    return parquet_bytes(
        good.with_row_index("_row")
        .with_columns(
            pl.when(pl.col("_row") % 5 < 3)
            .then(mirrored)
            .otherwise(pl.col("lpep_dropoff_datetime"))
            .alias("lpep_dropoff_datetime")
        )
        .drop("_row")
    )


def pickups_of_another_month(good: pl.DataFrame) -> bytes:
    """Every trip moved back five weeks: the January file holds only December's trips."""
    shift = pl.duration(weeks=5)
    return parquet_bytes(
        good.with_columns(
            pl.col("lpep_pickup_datetime") - shift, pl.col("lpep_dropoff_datetime") - shift
        )
    )


def served_twice(good: pl.DataFrame) -> bytes:
    """The month twice over: every trip appears twice, in full."""
    return parquet_bytes(pl.concat([good, good]))


def extra_columns(good: pl.DataFrame) -> bytes:
    """Two columns ml_assets does not know, as TLC added `cbd_congestion_fee` in 2025."""
    return parquet_bytes(
        good.with_columns(
            pl.lit(0.75).alias("cbd_congestion_fee"), pl.lit("street-hail").alias("hail_kind")
        )
    )


# Zone lookup variants: each takes the good CSV's text and returns the bytes served.


def zones_empty(good: str) -> bytes:
    return b""


def zones_header_only(good: str) -> bytes:
    return (good.splitlines()[0] + "\n").encode()


def zones_duplicated_ids(good: str) -> bytes:
    """IDs 1..5 listed a second time, in another borough: which row is right cannot be told."""
    lines = good.splitlines()
    conflicting = [
        ",".join([line.split(",")[0], "Queens", "Somewhere Else", "Boro Zone"])
        for line in lines[1:6]
    ]
    return ("\n".join([*lines, *conflicting]) + "\n").encode()


def zones_non_numeric_id(good: str) -> bytes:
    """The LocationID of the seventh zone spelled `seven`."""
    lines = good.splitlines()
    first, rest = lines[7].split(",", 1)
    assert first == "7", lines[7]
    lines[7] = f"seven,{rest}"
    return ("\n".join(lines) + "\n").encode()


# The CLI ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workspace:
    """A user's set-up for one case: a fresh DAGSTER_HOME and data folder, the CLI's environment."""

    folder: Path
    home: Path
    data_dir: Path
    env: dict[str, str]

    def day_file(self, asset: str, day: str = DAY) -> Path:
        return self.data_dir / "assets" / asset / f"{day}.parquet"

    def zones_file(self) -> Path:
        return self.data_dir / "assets" / "taxi_zones.parquet"

    def temp_files(self) -> list[Path]:
        """Files an interrupted atomic write would leave behind."""
        return sorted(self.data_dir.rglob("*.tmp")) if self.data_dir.exists() else []

    def cached_hashes(self) -> set[str]:
        """The SHA-256 of every file in the download cache, whatever its layout."""
        cache = self.data_dir / "cache"
        if not cache.exists():
            return set()
        return {sha256(path.read_bytes()) for path in cache.rglob("*") if path.is_file()}


def new_workspace(folder: Path, server: FileServer) -> Workspace:
    """A laptop as after `scripts/setup`, with the TLC source pointed at `server`.

    The child gets no ML_ASSETS_* or MLFLOW_* variable from the test's own environment, so a
    developer's settings cannot change what the case runs.
    """
    home = new_local_home(folder)
    data_dir = folder / "data"
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("ML_ASSETS_", "MLFLOW_", "DAGSTER_"))
    }
    env = {
        **inherited,
        "DAGSTER_HOME": str(home),
        "ML_ASSETS_SOURCE": "tlc",
        "ML_ASSETS_TAXI_TYPE": "green",
        "ML_ASSETS_DATA_DIR": str(data_dir),
        "ML_ASSETS_TLC_BASE_URL": server.base_url,
        "ML_ASSETS_TLC_ZONE_LOOKUP_URL": server.url(ZONES_FILE),
        "ML_ASSETS_EXECUTOR": "in_process",
        "DAGSTER_EVENT_BATCH_SIZE": "1000",
        # Dagster copies a run's captured output to the terminal with `tail -F` and stops it as
        # soon as the run ends, before it may have copied the last records (dagster-io/dagster
        # #23336): on a busy machine the failed check naming the day can miss the terminal. The
        # cases read the terminal, so they let the copy finish.
        "DAGSTER_COMPUTE_LOG_TAIL_WAIT_AFTER_FINISH": "1.5",
    }
    return Workspace(folder=folder, home=home, data_dir=data_dir, env=env)


@dataclass(frozen=True)
class CliRun:
    returncode: int
    output: str
    """stdout and stderr together, as a user's terminal shows them."""

    def tail(self, characters: int = 4000) -> str:
        return self.output[-characters:]

    def failure_text(self) -> str:
        """What the terminal says went wrong, without the noise around it.

        The ERROR records (a failed step with its error and the errors that caused it, steps not
        run) and the checks that did not pass, with their descriptions; stack frames are left
        out, so a file name seen only in a traceback's source path does not count. When the run
        never started (definitions that do not load), the whole output.
        """
        starts = [match.start() for match in _RECORD_START.finditer(self.output)]
        if not starts:
            return self.output
        records = [
            self.output[start:end]
            for start, end in zip(starts, [*starts[1:], len(self.output)], strict=True)
        ]
        wanted = [
            record
            for record in records
            if " - ERROR - " in record or " - WARNING - " in record or "did not pass" in record
        ]
        return "\n".join(
            line
            for record in wanted
            for line in record.splitlines()
            # Stack frames are indented; messages, also those of chained causes, are not.
            if line.strip() and not line.startswith(" ")
        )


# Anywhere, not only at a line's start: stdout and stderr share the pipe, so a record can follow
# output of the other stream that did not end its line yet.
_RECORD_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} - ")


REFETCH_CONFIG = '{"ops": {"raw_trips": {"config": {"refetch_source": true}}}}'
"""The run config that asks `raw_trips` to download its months again (the documented way)."""


def materialize(
    workspace: Workspace, select: str, partition: str = DAY, config_json: str | None = None
) -> CliRun:
    """`dagster asset materialize --select <select> --partition <partition>`, as a user types it,
    from a folder of its own (a `.env` in the repository would otherwise override `env`)."""
    command = [
        *(sys.executable, "-m", "dagster", "asset", "materialize"),
        *("-m", "ml_assets.definitions", "--select", select, "--partition", partition),
        *(("--config-json", config_json) if config_json else ()),
    ]
    process = subprocess.Popen(
        command,
        cwd=workspace.folder,
        env=workspace.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        preexec_fn=default_signal_handling,
    )
    try:
        output, _ = process.communicate(timeout=CLI_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return CliRun(returncode=-9, output=f"{output}\n[killed after {CLI_TIMEOUT_SECONDS} s]")
    return CliRun(returncode=process.returncode, output=output)


def step_retries(workspace: Workspace) -> list[str]:
    """Every step of every run in the workspace's instance that was put up for retry."""
    retried = []
    with local_instance(workspace.home) as instance:
        for run in instance.get_runs():
            for kind in (dg.DagsterEventType.STEP_UP_FOR_RETRY, dg.DagsterEventType.STEP_RESTARTED):
                retried.extend(
                    f"{kind.value}: {entry.step_key}"
                    for entry in instance.all_logs(run.run_id, of_type=kind)
                )
    return retried
