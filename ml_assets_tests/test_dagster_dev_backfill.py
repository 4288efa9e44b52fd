"""`dagster dev` on 127.0.0.1: a partition backfill launched over GraphQL runs to success."""

import json
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest

from ml_assets.settings import Settings
from ml_assets_tests.dagster_dev import running_dagster_dev

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


def graphql(url: str, query: str, variables: dict) -> dict:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.loads(response.read())
    assert "errors" not in body, body["errors"]
    return body["data"]


@pytest.mark.slow
def test_a_backfill_launched_over_graphql_materializes_every_day(
    tmp_path: Path, local_dagster_env: dict[str, str]
):
    environment = local_dagster_env
    settings = Settings.from_env(environment)
    # Create the local MLflow store once: two runs creating a fresh sqlite store at the same
    # moment race on its schema migrations (a deployment creates it once, too).
    mlflow.MlflowClient(tracking_uri=settings.mlflow_tracking_uri).search_experiments()

    log = tmp_path / "dagster_dev.log"
    target = ("-m", "ml_assets.definitions")
    with running_dagster_dev(target, cwd=tmp_path, env=environment, log=log) as url:
        launched = graphql(
            url,
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
            backfill = graphql(url, STATUS, {"id": backfill_id})["partitionBackfillOrError"]
            if backfill["status"] in FINISHED or time.monotonic() > deadline:
                break
            time.sleep(3)

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
