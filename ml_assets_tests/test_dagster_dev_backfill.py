"""`dagster dev` on 127.0.0.1: a partition backfill launched over GraphQL runs to success."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest

from ml_assets.settings import Settings

# From the first partition: a model trains on the features of every day of its window.
DAYS = ["2021-01-01", "2021-01-02"]
BACKFILLED = ["raw_trips", "trip_features", "duration_model"]

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on UnauthorizedError { message }
  }
}
"""

STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      status
      runs(limit: 50) { runId status tags { key value } }
      error { message }
    }
    ... on PythonError { message }
  }
}
"""

FINISHED = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def graphql(port: int, query: str, variables: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.loads(response.read())
    assert "errors" not in body, body["errors"]
    return body["data"]


def wait_until_serving(port: int, server: subprocess.Popen, log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, f"dagster dev exited:\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"dagster dev did not answer in {seconds}s:\n{log.read_text()[-3000:]}")


def stop(server: subprocess.Popen) -> None:
    """SIGTERM to dagster dev itself; it stops its webserver and daemon. Kill its group if stuck."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)  # its own session, started below
            server.wait(timeout=30)
    # Code servers and run workers it started are in its process group; leave none behind.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)


@pytest.mark.slow
def test_a_backfill_launched_over_graphql_materializes_every_day(
    tmp_path: Path, local_dagster_env: dict[str, str]
):
    environment = local_dagster_env
    settings = Settings.from_env(environment)
    # Create the local MLflow store once: two runs creating a fresh sqlite store at the same
    # moment race on its schema migrations (a deployment creates it once, too).
    mlflow.MlflowClient(tracking_uri=settings.mlflow_tracking_uri).search_experiments()

    port = free_port()
    log = tmp_path / "dagster_dev.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "dagster", "dev", "-m", "ml_assets.definitions"),
                *("--host", "127.0.0.1", "--port", str(port)),
            ],
            cwd=tmp_path,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # default SIGINT/SIGTERM handling, its own process group
        )
    try:
        wait_until_serving(port, server, log, seconds=240)
        launched = graphql(
            port,
            LAUNCH,
            {
                # Exact days per asset: with `partitionNames`, Dagster would also backfill every
                # model whose 28-day window reads these days' features (27 more days).
                "params": {
                    "partitionsByAssets": [
                        {
                            "assetKey": {"path": [name]},
                            "partitions": {"range": {"start": DAYS[0], "end": DAYS[-1]}},
                        }
                        for name in BACKFILLED
                    ]
                }
            },
        )["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]

        deadline = time.monotonic() + 420
        while True:
            backfill = graphql(port, STATUS, {"id": backfill_id})["partitionBackfillOrError"]
            if backfill["status"] in FINISHED or time.monotonic() > deadline:
                break
            time.sleep(3)
    finally:
        stop(server)

    assert backfill["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), (
        backfill,
        log.read_text()[-3000:],
    )
    runs = backfill["runs"]
    assert {run["status"] for run in runs} == {"SUCCESS"}
    # Ingestion and features: one run for the whole range. Models: one run per day.
    ranges = [run for run in runs if any(t["key"].endswith("range_start") for t in run["tags"])]
    per_day = [
        next(tag["value"] for tag in run["tags"] if tag["key"] == "dagster/partition")
        for run in runs
        if run not in ranges
    ]
    assert len(ranges) == 1
    assert sorted(per_day) == DAYS
    for asset, suffix in (("raw_trips", "parquet"), ("trip_features", "parquet")):
        assert sorted(p.name for p in (settings.assets_dir / asset).iterdir()) == [
            f"{day}.{suffix}" for day in DAYS
        ]
    models = [
        json.loads((settings.assets_dir / "duration_model" / f"{day}.json").read_text())
        for day in DAYS
    ]
    assert [model["window_end"] for model in models] == DAYS
    assert len({model["version"] for model in models}) == len(DAYS)
