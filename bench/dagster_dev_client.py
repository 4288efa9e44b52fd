"""`dagster dev` for the `peers` case: started on loopback, runs launched over its GraphQL API.

Runs are launched as the UI launches them: `launchRun` (a run of some assets for a partition or a
partition range) or `launchPartitionBackfill` (a backfill, which Dagster's daemon turns into runs
and the run queue starts). Each launch is timed from the request to the moment the webserver
reports the run or backfill finished.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.prefect_env import wait_until_answering
from ml_assets_tests.processes import default_signal_handling, free_port, stop_process_group

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

RUN_STATUS = """
query Status($id: ID!) {
  runOrError(runId: $id) { __typename ... on Run { status } ... on PythonError { message } }
}
"""

LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}
"""

BACKFILL_STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status runs(limit: 100) { runId status } }
    ... on PythonError { message }
  }
}
"""

LOCATIONS = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
  name locationOrLoadError { __typename } } } } }
"""

RUN_DONE = {"SUCCESS", "FAILURE", "CANCELED"}
BACKFILL_DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


@dataclass(frozen=True)
class DagsterDev:
    """A running `dagster dev`: its URL and the code location it serves."""

    url: str
    location: str
    started_seconds: float

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": dict(variables or {})}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            body = json.loads(response.read())
        if body.get("errors"):
            raise RuntimeError(f"dagster dev GraphQL errors: {body['errors']}")
        return body["data"]

    def run(self, assets: Sequence[str], tags: Mapping[str, str], timeout: float = 1800) -> float:
        """Launch a run of `assets` (their checks included) with `tags`; seconds until it ended."""
        started = time.perf_counter()
        launched = self.graphql(
            LAUNCH_RUN,
            {
                "params": {
                    "selector": {
                        "repositoryLocationName": self.location,
                        "repositoryName": "__repository__",
                        "jobName": "__ASSET_JOB",
                        "assetSelection": [{"path": [name]} for name in assets],
                    },
                    "executionMetadata": {
                        "tags": [{"key": key, "value": value} for key, value in tags.items()]
                    },
                    "runConfigData": {},
                }
            },
        )["launchRun"]
        if launched["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(f"dagster dev refused the run of {', '.join(assets)}: {launched}")
        run_id = launched["run"]["runId"]
        status = self._wait(
            lambda: self.graphql(RUN_STATUS, {"id": run_id})["runOrError"]["status"],
            RUN_DONE,
            timeout,
            f"run {run_id}",
        )
        if status != "SUCCESS":
            raise RuntimeError(f"dagster dev run {run_id} of {', '.join(assets)} ended {status}")
        return time.perf_counter() - started

    def backfill(
        self, assets: Sequence[str], first: str, last: str, timeout: float = 1800
    ) -> float:
        """Launch a backfill of `assets` over `first..last`; seconds until it completed."""
        started = time.perf_counter()
        launched = self.graphql(
            LAUNCH_BACKFILL,
            {
                "params": {
                    "partitionsByAssets": [
                        {
                            "assetKey": {"path": [name]},
                            "partitions": {"range": {"start": first, "end": last}},
                        }
                        for name in assets
                    ]
                }
            },
        )["launchPartitionBackfill"]
        if launched["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"dagster dev refused the backfill: {launched}")
        backfill_id = launched["backfillId"]

        def status() -> str:
            answer = self.graphql(BACKFILL_STATUS, {"id": backfill_id})
            return answer["partitionBackfillOrError"]["status"]

        final = self._wait(status, BACKFILL_DONE, timeout, f"backfill {backfill_id}")
        if final not in ("COMPLETED", "COMPLETED_SUCCESS"):
            raise RuntimeError(f"dagster dev backfill {backfill_id} ended {final}")
        return time.perf_counter() - started

    @staticmethod
    def _wait(poll: Any, done: set[str], timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        while True:
            status = poll()
            if status in done:
                return status
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not finish within {timeout:.0f} s (last: {status})")
            # Often enough that polling adds little to a run of seconds; rarely enough to be
            # no load on the webserver.
            time.sleep(0.2)


@contextlib.contextmanager
def running_dagster_dev(
    module: str, *, cwd: Path, env: Mapping[str, str], log: Path, timeout: float = 300
) -> Iterator[DagsterDev]:
    """`dagster dev -m module` on a free loopback port until the block ends; stopped by its pid.

    `cwd` must not be the repository root, whose `.env` would override `env`.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as output:
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "dagster", "dev", "-m", module),
                *("--host", "127.0.0.1", "--port", str(port)),
            ],
            cwd=cwd,
            env=dict(env),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=default_signal_handling,
        )
    try:
        started = time.monotonic()
        wait_until_answering(f"{url}/server_info", server, log, "dagster dev", timeout)
        dev = DagsterDev(url, module, 0.0)
        while True:  # the webserver answers before the code location has loaded
            entries = dev.graphql(LOCATIONS)["workspaceOrError"]["locationEntries"]
            loaded = [
                entry["name"]
                for entry in entries
                if (entry["locationOrLoadError"] or {}).get("__typename") == "RepositoryLocation"
            ]
            if loaded:
                break
            if time.monotonic() - started > timeout:
                raise RuntimeError(
                    f"dagster dev loaded no code location:\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield DagsterDev(url, loaded[0], time.monotonic() - started)
    finally:
        stop_process_group(server)
