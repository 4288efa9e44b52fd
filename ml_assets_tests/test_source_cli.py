"""The TLC source driven through the `dagster` CLI as users run it: stopping a run, re-fetching.

Each test starts `dagster asset materialize` in its own session with default signal handling, on a
temporary DAGSTER_HOME (the local template), the `tlc` source pointed at a loopback server, and
every step in the run's process (as `.env` from `scripts/setup` sets).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from ml_assets.lib.sample_source import sample_raw_trips
from ml_assets.lib.tlc_client import TLCClient
from ml_assets_tests.conftest import local_instance, new_local_home
from ml_assets_tests.http_fixtures import FileServer, silent_server
from ml_assets_tests.processes import default_signal_handling

JANUARY_FILE = "green_tripdata_2021-01.parquet"
DAY = "2021-01-05"


def cli_environment(tmp_path: Path, base_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DAGSTER_HOME": str(new_local_home(tmp_path)),
        "ML_ASSETS_SOURCE": "tlc",
        "ML_ASSETS_DATA_DIR": str(tmp_path / "data"),
        "ML_ASSETS_TLC_BASE_URL": base_url,
        "ML_ASSETS_TLC_ZONE_LOOKUP_URL": f"{base_url}/taxi_zone_lookup.csv",
        "ML_ASSETS_EXECUTOR": "in_process",
    }


def materialize_command(*extra: str) -> list[str]:
    return [
        *(sys.executable, "-m", "dagster", "asset", "materialize"),
        *("-m", "ml_assets.definitions", "--select", "raw_trips", "--partition", DAY),
        *extra,
    ]


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_run_downloading_from_a_silent_source_stops_within_seconds_when_told_to(
    tmp_path: Path, stop_signal: signal.Signals
):
    with silent_server() as (base_url, accepted):
        environment = cli_environment(tmp_path, base_url)
        log = tmp_path / "materialize.log"
        with log.open("w") as output:
            process = subprocess.Popen(
                materialize_command(),
                cwd=tmp_path,
                env=environment,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=default_signal_handling,
            )
        try:
            deadline = time.monotonic() + 120
            while not accepted and time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.1)
            assert accepted, f"the run never reached the source:\n{log.read_text()[-3000:]}"
            time.sleep(1.0)  # well inside the download's 30 s read timeout

            told = time.monotonic()
            os.kill(process.pid, stop_signal)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pytest.fail(
                    f"still running 30 s after {stop_signal.name}:\n{log.read_text()[-3000:]}"
                )
            took = time.monotonic() - told
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

        assert process.returncode != 0
        assert took < 10, f"took {took:.1f} s to stop"
        # No attempt after the signal: neither the client's retries nor the step's RetryPolicy.
        assert [moment for moment, _ in accepted if moment > told] == []

    with local_instance(Path(environment["DAGSTER_HOME"])) as instance:
        (run,) = instance.get_runs()
        assert run.status in {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
        retries = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY
        ).records
        assert retries == []
        (failure,) = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE
        ).records
        error = failure.event_log_entry.dagster_event.step_failure_data.error
        assert error.cls_name == "StopRequested"
        assert f"partition {DAY}: stopped on request; the step is not retried" in error.message


def month_file(*days: date) -> bytes:
    buffer = io.BytesIO()
    pl.concat([sample_raw_trips(day) for day in days]).write_parquet(buffer)
    return buffer.getvalue()


@pytest.mark.slow
def test_refetch_source_from_the_cli_downloads_the_month_again(
    tlc_server: FileServer, tmp_path: Path
):
    tlc_server.add_file(JANUARY_FILE, month_file(date(2021, 1, 4), date(2021, 1, 5)))
    environment = cli_environment(tmp_path, tlc_server.base_url)
    cache = tmp_path / "data" / "cache"
    old = TLCClient(cache, base_url=tlc_server.base_url).fetch_month("green", date(2021, 1, 1))
    # TLC replaces the file; nothing (no sensor) has noticed.
    buffer = io.BytesIO()
    pl.concat(
        [sample_raw_trips(date(2021, 1, 4)), sample_raw_trips(date(2021, 1, 5)).head(100)]
    ).write_parquet(buffer)
    replaced = buffer.getvalue()
    tlc_server.add_file(JANUARY_FILE, replaced)

    completed = subprocess.run(
        materialize_command(
            "--config-json",
            json.dumps({"ops": {"raw_trips": {"config": {"refetch_source": True}}}}),
        ),
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=400,
        start_new_session=True,
        preexec_fn=default_signal_handling,
    )

    assert completed.returncode == 0, completed.stderr[-3000:]
    assert tlc_server.requests_for(JANUARY_FILE) == ["GET", "GET"]
    assert (cache / JANUARY_FILE).read_bytes() == replaced
    assert json.loads((cache / "green_tripdata_2021-01.json").read_text())["sha256"] != old.sha256
    stored = pl.read_parquet(tmp_path / "data" / "assets" / "raw_trips" / f"{DAY}.parquet")
    assert stored.height == 100
