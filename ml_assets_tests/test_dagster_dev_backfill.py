"""`dagster dev` on 127.0.0.1: a partition backfill of every partitioned asset, over GraphQL."""

import json
import time
from pathlib import Path
from typing import Any

import dagster as dg
import mlflow
import polars as pl
import pytest

from ml_assets.settings import Settings
from ml_assets_tests.conftest import local_instance
from ml_assets_tests.dagster_dev import BACKFILL_DONE, DagsterGraphQL, running_dagster_dev

# From the first partition: a model trains on the features of every day of its window. The
# first day has no earlier model to evaluate or serve: its evaluation, gate, decision and
# predictions are records saying so, and the backfill completes over every day. The second day
# is scored, decided (its challenger has no champion to beat and beats the baseline) and
# predicted in one run.
DAYS = ["2021-01-01", "2021-01-02"]
BACKFILLED = {
    name: DAYS
    for name in (
        "raw_trips",
        "trip_features",
        "duration_model",
        "model_evaluation",
        "challenger_validation",
        "model_promotion",
        "trip_duration_predictions",
    )
}


def _next_tick(instance: dg.DagsterInstance, sensor: str, since: float, log: Path) -> Any:
    """The first finished tick of `sensor` that started after `since` (a Unix time)."""
    (state,) = (s for s in instance.all_instigator_state() if s.instigator_name == sensor)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, after=since)
        if finished := [tick for tick in ticks if tick.status.value != "STARTED"]:
            return min(finished, key=lambda tick: tick.timestamp)
        time.sleep(1)
    pytest.fail(f"no tick of {sensor} after the backfill:\n{log.read_text()[-3000:]}")


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
        api = DagsterGraphQL(url)
        backfill_id = api.launch_backfill(
            {name: (days[0], days[-1]) for name, days in BACKFILLED.items()}
        )
        api.wait_for(
            lambda: api.backfill(backfill_id)["status"],
            BACKFILL_DONE,
            420,
            f"backfill {backfill_id}",
            every=3,
        )
        backfill = api.backfill(backfill_id)
        # Each day was decided in the run that evaluated it: the promotion sensor, looking after
        # the backfill, launched no promotion_job of its own.
        with local_instance(Path(environment["DAGSTER_HOME"])) as instance:
            tick = _next_tick(instance, "promote_evaluated_day", since=time.time(), log=log)
            promotion_runs = instance.get_runs(filters=dg.RunsFilter(job_name="promotion_job"))

    assert backfill["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), (
        backfill,
        log.read_text()[-3000:],
    )
    runs = backfill["runs"]
    assert {run["status"] for run in runs} == {"SUCCESS"}
    assert tick.status.value == "SKIPPED" and not promotion_runs
    # Ingestion, features and the models (all three single-run backfill policies): one run for
    # the whole range. The rest: one run per day, which scores, decides and predicts the day.
    ranges = [run for run in runs if any(t["key"].endswith("range_start") for t in run["tags"])]
    per_day = {
        next(tag["value"] for tag in run["tags"] if tag["key"] == "dagster/partition")
        for run in runs
        if run not in ranges
    }
    assert len(ranges) == 1
    assert per_day == set(DAYS)
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
    # Walk-forward: the second day is scored by the model trained through the first.
    evaluation = json.loads(
        (settings.assets_dir / "model_evaluation" / f"{DAYS[1]}.json").read_text()
    )
    assert evaluation["serving_model"]["version"] == models[0]["version"]
    predictions = pl.read_parquet(
        settings.assets_dir / "trip_duration_predictions" / f"{DAYS[1]}.parquet"
    )
    features = pl.read_parquet(settings.assets_dir / "trip_features" / f"{DAYS[1]}.parquet")
    assert predictions["trip_key"].to_list() == features["trip_key"].to_list()
    assert predictions["model_version"].unique().to_list() == [models[0]["version"]]
    decision = json.loads((settings.assets_dir / "model_promotion" / f"{DAYS[1]}.json").read_text())
    assert decision["outcome"] == "promoted"
    assert decision["challenger"]["version"] == models[0]["version"]
    first_day = settings.assets_dir / "trip_duration_predictions" / f"{DAYS[0]}.parquet"
    assert pl.read_parquet(first_day).height == 0
