"""Terminate in the UI stops a run within seconds, even one waiting on a source that never answers.

`dagster dev` on a temporary DAGSTER_HOME with the `tlc` source pointed at a loopback server that
accepts connections and never answers; a `raw_trips` run is launched and then terminated over
GraphQL, with the mutations the UI's Launch and Terminate buttons send.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg
import pytest

from ml_assets_tests.conftest import local_instance, new_local_home
from ml_assets_tests.dagster_dev import DagsterGraphQL, running_dagster_dev
from ml_assets_tests.http_fixtures import silent_server

DAY = "2021-01-05"
MONTH_FILE = "green_tripdata_2021-01.parquet"
"""The run's month file: sensors of `dagster dev` (freshness, summary) ask the same server about
recent months, so the run's own requests are told apart by the file they name."""

TERMINATE_RUN = """
mutation Terminate($runId: String!) {
  terminateRun(runId: $runId, terminatePolicy: SAFE_TERMINATE) {
    __typename
    ... on TerminateRunSuccess { run { runId } }
    ... on TerminateRunFailure { message }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}
"""


def _run_requests(accepted: list[tuple[float, str]]) -> list[float]:
    return [moment for moment, line in accepted if MONTH_FILE in line]


@pytest.mark.slow
def test_terminate_in_the_ui_stops_a_run_waiting_on_a_silent_source_within_seconds(
    tmp_path: Path,
) -> None:
    with silent_server() as (base_url, accepted):
        home = new_local_home(tmp_path)
        environment = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "ML_ASSETS_SOURCE": "tlc",
            "ML_ASSETS_DATA_DIR": str(tmp_path / "data"),
            "ML_ASSETS_TLC_BASE_URL": base_url,
            "ML_ASSETS_TLC_ZONE_LOOKUP_URL": f"{base_url}/taxi_zone_lookup.csv",
            "ML_ASSETS_EXECUTOR": "in_process",
        }
        log = tmp_path / "dagster_dev.log"
        target = ("-m", "ml_assets.definitions")
        with running_dagster_dev(target, cwd=tmp_path, env=environment, log=log) as url:
            api = DagsterGraphQL(url)
            location = api.wait_for_code_location(180, log)
            run_id = api.launch_run(location, ["raw_trips"], {"dagster/partition": DAY})

            deadline = time.monotonic() + 180
            while not _run_requests(accepted) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _run_requests(accepted), (
                f"the run never reached the source; seen: {accepted}\n{log.read_text()[-3000:]}"
            )
            time.sleep(1.0)  # well inside the download's 30 s read timeout

            told = time.monotonic()
            terminated = api.query(TERMINATE_RUN, {"runId": run_id})["terminateRun"]
            assert terminated["__typename"] == "TerminateRunSuccess", terminated

            status = None
            while time.monotonic() - told < 30:
                status = api.run_status(run_id)
                if status in ("CANCELED", "FAILURE", "SUCCESS"):
                    break
                time.sleep(0.25)
            took = time.monotonic() - told
            assert status in ("CANCELED", "FAILURE"), (status, log.read_text()[-3000:])
            assert took < 15, f"took {took:.1f} s to stop (ended {status})"
            # Long enough for a client retry or a step retry to show up, if there were one.
            time.sleep(5)
            after = [moment for moment in _run_requests(accepted) if moment > told]
            assert after == [], f"{len(after)} request(s) to the source after Terminate"

    with local_instance(home) as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None
        assert run.status in {dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.FAILURE}
        retries = instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY
        ).records
        assert retries == []
        if run.status == dg.DagsterRunStatus.FAILURE:
            (failure,) = instance.get_records_for_run(
                run_id, of_type=dg.DagsterEventType.STEP_FAILURE
            ).records
            error = failure.event_log_entry.dagster_event.step_failure_data.error
            assert "stopped on request" in error.message, error.message
    print(f"terminated run ended {run.status.value} {took:.1f} s after Terminate")
