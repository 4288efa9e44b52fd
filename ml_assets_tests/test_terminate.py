"""Terminate in the UI stops a run within seconds, even one waiting on a source that never answers.

`dagster dev` on a temporary DAGSTER_HOME with the `tlc` source pointed at a loopback server that
accepts connections and never answers; a `raw_trips` run is launched and then terminated over
GraphQL, with the mutations the UI's Launch and Terminate buttons send.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from ml_assets_tests.conftest import local_instance, new_local_home
from ml_assets_tests.dagster_dev import running_dagster_dev
from ml_assets_tests.http_fixtures import silent_server

DAY = "2021-01-05"
MONTH_FILE = "green_tripdata_2021-01.parquet"
"""The run's month file: sensors of `dagster dev` (freshness, summary) ask the same server about
recent months, so the run's own requests are told apart by the file they name."""

LOCATIONS = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
  name locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""

LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
  }
}
"""

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

RUN_STATUS = """
query Status($id: ID!) {
  runOrError(runId: $id) { __typename ... on Run { status } ... on PythonError { message } }
}
"""


def graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.loads(response.read())
    assert "errors" not in body, body["errors"]
    return body["data"]


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
            workspace = graphql(url, LOCATIONS)["workspaceOrError"]
            (location,) = workspace["locationEntries"]
            assert location["locationOrLoadError"]["__typename"] == "RepositoryLocation", location

            launched = graphql(
                url,
                LAUNCH_RUN,
                {
                    "params": {
                        "selector": {
                            "repositoryLocationName": location["name"],
                            "repositoryName": "__repository__",
                            "jobName": "__ASSET_JOB",
                            "assetSelection": [{"path": ["raw_trips"]}],
                        },
                        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": DAY}]},
                        "runConfigData": {},
                    }
                },
            )["launchRun"]
            assert launched["__typename"] == "LaunchRunSuccess", launched
            run_id = launched["run"]["runId"]

            deadline = time.monotonic() + 180
            while not _run_requests(accepted) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _run_requests(accepted), (
                f"the run never reached the source; seen: {accepted}\n{log.read_text()[-3000:]}"
            )
            time.sleep(1.0)  # well inside the download's 30 s read timeout

            told = time.monotonic()
            terminated = graphql(url, TERMINATE_RUN, {"runId": run_id})["terminateRun"]
            assert terminated["__typename"] == "TerminateRunSuccess", terminated

            status = None
            while time.monotonic() - told < 30:
                status = graphql(url, RUN_STATUS, {"id": run_id})["runOrError"]["status"]
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
