"""`dagster dev` for tests and benchmarks: started on a free loopback port, stopped by its own pid,
and driven over GraphQL with the requests the UI sends (list the code locations, launch a run or a
partition backfill, read their status).

No pytest here: `bench/` starts `dagster dev` with it too (`bench/dagster_dev_client.py`).
"""

import contextlib
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml_assets_tests.processes import (
    default_signal_handling,
    free_port,
    stop_process_group,
    wait_until_answering,
)

LOCATIONS = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus
  locationOrLoadError { __typename ... on PythonError { message causes { message } } }
} } } }
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
    ... on PythonError { message stack }
    ... on UnauthorizedError { message }
  }
}
"""

BACKFILL_STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      status
      runs(limit: 100) { runId status tags { key value } }
      error { message }
    }
    ... on PythonError { message }
  }
}
"""

RUN_DONE = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
BACKFILL_DONE = frozenset(
    {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
)


@dataclass(frozen=True)
class DagsterGraphQL:
    """The GraphQL API of the `dagster dev` at `url`; every error in an answer raises."""

    url: str

    def query(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
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

    def locations(self) -> list[dict[str, Any]]:
        """The workspace's code locations: `name`, `loadStatus`, `locationOrLoadError`."""
        return self.query(LOCATIONS)["workspaceOrError"]["locationEntries"]

    def wait_for_code_location(self, timeout: float, log: Path) -> str:
        """The name of the first code location loaded; the webserver answers before that.

        Fails at once when a location failed to load, with its error, and after `timeout`
        seconds with the end of `log`.
        """
        deadline = time.monotonic() + timeout
        while True:
            for entry in self.locations():
                loaded = entry["locationOrLoadError"] or {}
                if loaded.get("__typename") == "RepositoryLocation":
                    return entry["name"]
                if loaded.get("__typename") == "PythonError":
                    raise RuntimeError(
                        f"code location {entry['name']} failed to load: {loaded['message']}"
                    )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"dagster dev loaded no code location within {timeout:.0f} s:\n"
                    f"{log.read_text()[-3000:]}"
                )
            time.sleep(0.5)

    def launch_run(self, location: str, assets: Sequence[str], tags: Mapping[str, str]) -> str:
        """Launch a run of `assets` (their checks included) with `tags`, as the UI's Materialize
        button does; the run's id."""
        launched = self.query(
            LAUNCH_RUN,
            {
                "params": {
                    "selector": {
                        "repositoryLocationName": location,
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
        return launched["run"]["runId"]

    def run_status(self, run_id: str) -> str:
        return self.query(RUN_STATUS, {"id": run_id})["runOrError"]["status"]

    def launch_backfill(self, ranges: Mapping[str, tuple[str, str]]) -> str:
        """Launch a backfill of each asset over its (first, last) partition range; its id.

        Exact ranges per asset: with `partitionNames`, Dagster would also backfill every
        downstream partition that reads these (a model's whole window, for example).
        """
        launched = self.query(
            LAUNCH_BACKFILL,
            {
                "params": {
                    "partitionsByAssets": [
                        {
                            "assetKey": {"path": [name]},
                            "partitions": {"range": {"start": first, "end": last}},
                        }
                        for name, (first, last) in ranges.items()
                    ]
                }
            },
        )["launchPartitionBackfill"]
        if launched["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"dagster dev refused the backfill: {launched}")
        return launched["backfillId"]

    def backfill(self, backfill_id: str) -> dict[str, Any]:
        """The backfill's `status`, `runs` (id, status, tags) and `error`."""
        return self.query(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]

    @staticmethod
    def wait_for(
        poll: Callable[[], str], done: frozenset[str], timeout: float, what: str, every: float
    ) -> str:
        """Call `poll` every `every` seconds until it returns one of `done`; that status."""
        deadline = time.monotonic() + timeout
        while True:
            status = poll()
            if status in done:
                return status
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not finish within {timeout:.0f} s (last: {status})")
            time.sleep(every)


@contextlib.contextmanager
def running_dagster_dev(
    target: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    timeout: float = 240,
    while_starting: Callable[[], None] | None = None,
) -> Iterator[str]:
    """`dagster dev <target>` on 127.0.0.1; yields its URL once it answers, stops it afterwards.

    `cwd` must not be the repository root: dagster dev would let a developer's `.env` there
    override `env`. `while_starting` runs once the process is started, before waiting for it to
    answer. The server runs in its own process group with default signal handling, so
    stopping it by its pid stops its webserver, daemon, code servers and runs with it.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as output:
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "dagster", "dev", *target),
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
        if while_starting is not None:
            while_starting()
        wait_until_answering(f"{url}/server_info", server, log, "dagster dev", timeout)
        yield url
    finally:
        stop_process_group(server)
