"""The whole asset graph on the offline sample source, day by day, like the daily schedule runs it.

One module-scoped fixture materializes `taxi_zones`, then `ml_loop_job` for four consecutive days
(2021-01-01..04) into a temp data dir and a temp Dagster instance; the tests then read the files,
the materialization metadata, the MLflow runs and the model registry it left behind.
"""

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from unittest import mock

import dagster as dg
import mlflow
import numpy as np
import polars as pl
import pytest
from mlflow import MlflowClient

from ml_assets.assets import evaluation
from ml_assets.jobs import ml_loop_job, promotion_job
from ml_assets.lib.features import FEATURE_SCHEMA, build_trip_features
from ml_assets.lib.model import ALL_FEATURES, ZonePairBaseline, regression_metrics
from ml_assets.lib.model_input import model_input
from ml_assets.lib.registry_labels import CHAMPION_ALIAS, PROMOTED_ON_TAG, TRAINED_THROUGH_TAG
from ml_assets.lib.sample_source import sample_trips, sample_zones
from ml_assets.resources import build_resources
from ml_assets.settings import Settings
from ml_assets_tests.graph import ASSET_CHECKS, ASSETS

# The whole loop over four days, MLflow included (about a minute): the full suite's, not the
# inner loop's.
pytestmark = pytest.mark.slow

DAYS = ["2021-01-01", "2021-01-02", "2021-01-03", "2021-01-04"]
TABLE_ASSETS = ("raw_trips", "trip_features", "trip_duration_predictions")


@dataclass
class Loop:
    settings: Settings
    instance: dg.DagsterInstance
    zones_run: dg.ExecuteInProcessResult
    runs: dict[str, dg.ExecuteInProcessResult]
    promotions: dict[str, dg.ExecuteInProcessResult]
    """`promotion_job` of each evaluated day, as the `promote_evaluated_day` sensor runs it."""

    def promoted(self, day: str) -> bool:
        """Whether the challenger evaluated on `day` passed the gate and was promoted."""
        return day in self.promotions and self.promotions[day].success

    def metadata(self, day: str, asset: str) -> dict[str, Any] | None:
        """The metadata of `asset`'s materialization in the run of `day`, as plain values."""
        events = [
            event
            for event in self.runs[day].get_asset_materialization_events()
            if event.asset_key == dg.AssetKey(asset)
        ]
        if not events:
            return None
        (event,) = events
        return {key: value.value for key, value in event.materialization.metadata.items()}

    def file(self, asset: str, day: str, suffix: str = ".parquet") -> Path:
        return self.settings.assets_dir / asset / f"{day}{suffix}"

    def output(self, asset: str, day: str) -> Any:
        if asset in ("duration_model", "model_evaluation"):
            return json.loads(self.file(asset, day, ".json").read_text())
        return pl.read_parquet(self.file(asset, day))

    @property
    def client(self) -> MlflowClient:
        uri = self.settings.mlflow_tracking_uri
        return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    data_dir = tmp_path_factory.mktemp("graph") / "data"
    settings = Settings.from_env(
        {"ML_ASSETS_SOURCE": "sample", "ML_ASSETS_DATA_DIR": str(data_dir)}
    )
    defs = dg.Definitions(
        assets=ASSETS,
        asset_checks=ASSET_CHECKS,
        jobs=[ml_loop_job, promotion_job],
        resources=build_resources(settings),
    )
    job = defs.resolve_job_def(ml_loop_job.name)
    promotion = defs.resolve_job_def(promotion_job.name)
    # The runs (and the model loading below) point the mlflow module at this loop's store, and
    # MLflow exports the URI it is given to the environment: both are put back afterwards, or the
    # later tests of this worker would inherit a store (a module fixture outlives the per-test
    # environment reset of conftest.py).
    tracking_uri, registry_uri = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    with mock.patch.dict(os.environ), dg.instance_for_test() as instance:
        zones_run = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey("taxi_zones")]
        )
        runs, promotions = {}, {}
        for day in DAYS:
            runs[day] = job.execute_in_process(instance=instance, partition_key=day)
            # A challenger that fails the gate fails this run and is not promoted.
            promotions[day] = promotion.execute_in_process(
                instance=instance, partition_key=day, raise_on_error=False
            )
        yield Loop(settings, instance, zones_run, runs, promotions)
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(registry_uri)


def test_every_day_runs_and_writes_its_files_under_the_data_dir(loop: Loop) -> None:
    assets_dir = loop.settings.assets_dir
    assert loop.zones_run.success
    assert all(run.success for run in loop.runs.values())
    assert (assets_dir / "taxi_zones.parquet").is_file()
    listing = {
        folder.name: sorted(path.name for path in folder.iterdir())
        for folder in assets_dir.iterdir()
        if folder.is_dir()
    }
    assert listing["raw_trips"] == [f"{day}.parquet" for day in DAYS]
    assert listing["trip_features"] == [f"{day}.parquet" for day in DAYS]
    assert listing["duration_model"] == [f"{day}.json" for day in DAYS]
    # Every step writes every day, the first day's evaluation and predictions included.
    assert listing["model_evaluation"] == [f"{day}.json" for day in DAYS]
    assert listing["trip_duration_predictions"] == [f"{day}.parquet" for day in DAYS]
    assert (loop.settings.data_dir / "mlflow.db").is_file()
    assert any((loop.settings.data_dir / "mlartifacts").rglob("MLmodel"))
    assert not list(loop.settings.data_dir.rglob("*.tmp"))


def test_the_first_day_is_complete_and_says_that_nothing_was_scored_or_predicted(
    loop: Loop,
) -> None:
    first = loop.runs[DAYS[0]]
    decided = loop.promotions[DAYS[0]]
    note = "the first day of the loop (ML_ASSETS_START_DATE): no model was trained before it; "

    assert first.success and decided.success
    assert {e.asset_key.to_user_string() for e in first.get_asset_materialization_events()} == {
        "raw_trips",
        "trip_features",
        "duration_model",
        "model_evaluation",
        "trip_duration_predictions",
    }
    evaluated = loop.metadata(DAYS[0], "model_evaluation")
    assert evaluated == {
        "first_day": True,
        "note": note + "nothing is scored",
        "dagster/row_count": 0,
    }
    assert loop.output("model_evaluation", DAYS[0]) == {
        "date": DAYS[0],
        "first_day": True,
        "note": note + "nothing is scored",
    }
    predictions = loop.output("trip_duration_predictions", DAYS[0])
    assert predictions.height == 0
    assert predictions.columns == loop.output("trip_duration_predictions", DAYS[1]).columns
    predicted = loop.metadata(DAYS[0], "trip_duration_predictions")
    assert predicted is not None
    assert predicted["model_version"] is None
    assert predicted["note"] == note + "no trip of the day is predicted"
    # The gate has nothing to judge and passes, saying why; the decision decides nothing.
    (beats_champion, beats_baseline) = decided.get_asset_check_evaluations()
    assert beats_champion.passed and beats_baseline.passed
    assert beats_champion.description == f"{DAYS[0]}: {note}there is no challenger to gate"
    decisions = {
        event.asset_key.to_user_string(): {
            key: value.value for key, value in event.materialization.metadata.items()
        }
        for event in decided.get_asset_materialization_events()
    }
    assert decisions["model_promotion"] == {
        "first_day": True,
        "note": note + "there is nothing to decide; the champion stays",
        "outcome": "nothing to decide",
    }


def test_outputs_are_the_sample_trips_and_their_features(loop: Loop) -> None:
    zones = pl.read_parquet(loop.settings.assets_dir / "taxi_zones.parquet")
    assert zones.equals(sample_zones())
    for day in DAYS:
        trips = sample_trips(date.fromisoformat(day))
        assert loop.output("raw_trips", day).equals(trips)
        assert loop.output("trip_features", day).equals(
            build_trip_features(trips.lazy(), zones.lazy()).collect()
        )


def test_every_materialization_records_its_row_count_and_tables_their_schema(loop: Loop) -> None:
    zones_meta = {
        key: value.value
        for key, value in loop.zones_run.get_asset_materialization_events()[
            0
        ].materialization.metadata.items()
    }
    assert zones_meta["dagster/row_count"] == 265
    assert [column.name for column in zones_meta["dagster/column_schema"].columns] == [
        "LocationID",
        "Borough",
        "Zone",
        "service_zone",
    ]
    for day in DAYS:
        for event in loop.runs[day].get_asset_materialization_events():
            asset = event.asset_key.to_user_string()
            meta = loop.metadata(day, asset)
            assert meta is not None
            assert isinstance(meta["dagster/row_count"], int), (day, asset)
            if asset in TABLE_ASSETS:
                stored = loop.output(asset, day)
                assert meta["dagster/row_count"] == stored.height, (day, asset)
                schema = meta["dagster/column_schema"]
                assert [(c.name, c.type) for c in schema.columns] == [
                    (name, str(dtype)) for name, dtype in stored.schema.items()
                ]


def test_sample_source_assets_say_their_data_is_synthetic(loop: Loop) -> None:
    zones_meta = loop.zones_run.get_asset_materialization_events()[0].materialization.metadata
    assert zones_meta["synthetic"].value is True
    assert "synthetic" in zones_meta["source"].value
    for day in DAYS:
        meta = loop.metadata(day, "raw_trips")
        assert meta is not None
        assert meta["synthetic"] is True
        assert "synthetic" in meta["source"]


def test_each_day_trains_and_registers_a_model_on_its_window(loop: Loop) -> None:
    rows_by_day = {day: loop.output("trip_features", day).height for day in DAYS}
    for number, day in enumerate(DAYS, start=1):
        meta = loop.metadata(day, "duration_model")
        record = loop.output("duration_model", day)
        assert meta is not None
        assert meta["model_version"] == str(number)
        assert meta["model_uri"] == f"models:/nyc-taxi-trip-duration/{number}"
        assert meta["window"] == f"2021-01-01..{day}"
        assert meta["dagster/row_count"] == sum(rows_by_day[d] for d in DAYS[:number])
        assert meta["val_rmse"] < meta["baseline_val_rmse"]
        assert meta["mlflow_run"].endswith(f"/runs/{meta['mlflow_run_id']}")
        assert meta["mlflow_run"].startswith(loop.settings.mlflow_ui_url)
        assert meta["model_version_link"] == (
            f"{loop.settings.mlflow_ui_url}/#/models/nyc-taxi-trip-duration/versions/{number}"
        )
        assert record["version"] == str(number)
        assert record["run_id"] == meta["mlflow_run_id"]
        assert record["trained_through"] == day
        assert (record["window_start"], record["window_end"]) == ("2021-01-01", day)


def test_each_model_has_an_mlflow_run_with_params_metrics_and_tags(loop: Loop) -> None:
    client = loop.client
    experiment = client.get_experiment_by_name(loop.settings.mlflow_experiment)
    assert experiment is not None
    assert experiment.artifact_location == str(loop.settings.data_dir / "mlartifacts")
    for day in DAYS:
        meta = loop.metadata(day, "duration_model")
        assert meta is not None
        run = client.get_run(meta["mlflow_run_id"])
        assert run.info.experiment_id == experiment.experiment_id
        assert run.info.status == "FINISHED"
        assert run.data.tags["dagster_run_id"] == loop.runs[day].run_id
        assert run.data.tags["dagster_partition"] == day
        assert run.data.tags["dagster_asset"] == "duration_model"
        assert run.data.params["family"] == "hist_gradient_boosting"
        assert (run.data.params["window_start"], run.data.params["window_end"]) == (
            "2021-01-01",
            day,
        )
        assert run.data.metrics["val_rmse"] == pytest.approx(meta["val_rmse"])
        assert run.data.metrics["baseline_val_rmse"] == pytest.approx(meta["baseline_val_rmse"])
        assert run.data.metrics["train_rows"] == meta["dagster/row_count"]


def test_registered_versions_record_their_training_day_and_promotions(loop: Loop) -> None:
    client = loop.client
    versions = {
        str(v.version): v for v in client.search_model_versions("name='nyc-taxi-trip-duration'")
    }
    assert sorted(versions, key=int) == ["1", "2", "3", "4"]
    for number, day in enumerate(DAYS, start=1):
        version = versions[str(number)]
        assert version.tags[TRAINED_THROUGH_TAG] == day
        assert version.run_id == loop.metadata(day, "duration_model")["mlflow_run_id"]  # type: ignore[index]

    promoted_on = {
        number: version.tags[PROMOTED_ON_TAG]
        for number, version in versions.items()
        if PROMOTED_ON_TAG in version.tags
    }
    evaluations = {day: loop.output("model_evaluation", day) for day in DAYS[1:]}
    # A challenger is promoted on the day it won, and only then.
    assert promoted_on == {
        record["challenger"]["version"]: day
        for day, record in evaluations.items()
        if loop.promoted(day)
    }
    # v1 has no champion to beat on its first evaluation day.
    assert loop.promoted(DAYS[1])
    assert promoted_on["1"] == DAYS[1]
    # The alias points at the latest promotion.
    latest = max(promoted_on, key=lambda number: (promoted_on[number], int(number)))
    champion = client.get_model_version_by_alias("nyc-taxi-trip-duration", CHAMPION_ALIAS)
    assert str(champion.version) == latest
    last_decision = max(day for day in DAYS[1:] if loop.promoted(day))
    decided = loop.promotions[last_decision].asset_materializations_for_node("model_promotion")
    assert decided[0].metadata["champion_version"].value == latest


def test_evaluation_scores_yesterdays_model_against_the_champion_on_the_same_trips(
    loop: Loop,
) -> None:
    promoted_on = {
        str(v.version): v.tags.get(PROMOTED_ON_TAG)
        for v in loop.client.search_model_versions("name='nyc-taxi-trip-duration'")
    }
    for index, day in enumerate(DAYS[1:], start=1):
        record = loop.output("model_evaluation", day)
        meta = loop.metadata(day, "model_evaluation")
        features = loop.output("trip_features", day)
        assert meta is not None
        assert record["date"] == day
        assert record["rows"] == features.height == meta["dagster/row_count"]
        # The challenger is the model trained through the day before.
        assert record["challenger"]["version"] == str(index)
        assert record["challenger"]["trained_through"] == DAYS[index - 1]

        use_tracking_store(loop)
        challenger = mlflow.sklearn.load_model(f"models:/nyc-taxi-trip-duration/{index}")
        actual = features["duration_min"].to_numpy()
        expected = regression_metrics(
            actual, challenger.predict(model_input(features, ALL_FEATURES))
        )
        assert meta["rmse"] == pytest.approx(expected["rmse"])
        assert meta["mae"] == pytest.approx(expected["mae"])
        assert record["challenger"]["rmse"] == pytest.approx(expected["rmse"])

        # The baseline learns from the days before, never from the day scored.
        history = pl.concat(loop.output("trip_features", d) for d in DAYS[:index])
        baseline = regression_metrics(actual, ZonePairBaseline(history).predict(features))
        assert meta["baseline_rmse"] == pytest.approx(baseline["rmse"])
        assert meta["rmse"] < meta["baseline_rmse"]

        # The incumbent is the champion going into the day: the latest promotion before it.
        before = {v: d for v, d in promoted_on.items() if d is not None and d < day}
        if before:
            incumbent = max(before, key=lambda v: (before[v], int(v)))
            if incumbent != str(index):
                assert record["incumbent"]["version"] == incumbent
                assert meta["champion_rmse"] == pytest.approx(record["incumbent"]["rmse"])
                # The default margin is 0: any lower RMSE passes the champion gate.
                assert loop.promoted(day) == (
                    record["challenger"]["rmse"] < record["incumbent"]["rmse"]
                )
        else:
            assert record["incumbent"] is None
            assert meta["champion_rmse"] is None
            assert loop.promoted(day)
        assert "promoted" not in meta  # the evaluation only scores; model_promotion decides
        assert meta["challenger_version"] == str(index)


def test_predictions_come_from_the_champion_going_into_the_day(loop: Loop) -> None:
    promoted_on = {
        str(v.version): v.tags.get(PROMOTED_ON_TAG)
        for v in loop.client.search_model_versions("name='nyc-taxi-trip-duration'")
    }
    for index, day in enumerate(DAYS[1:], start=1):
        record = loop.output("model_evaluation", day)
        stored = loop.output("trip_duration_predictions", day)
        meta = loop.metadata(day, "trip_duration_predictions")
        features = loop.output("trip_features", day)
        assert meta is not None
        before = {v: d for v, d in promoted_on.items() if d is not None and d < day}
        # Before any promotion, the model trained through the day before serves.
        expected_version = max(before, key=lambda v: (before[v], int(v))) if before else str(index)
        assert record["serving_model"]["version"] == expected_version
        assert meta["model_version"] == expected_version
        assert stored["model_version"].unique().to_list() == [expected_version]
        # No leakage: the serving model was trained on days before this one only.
        assert record["serving_model"]["trained_through"] < day

        assert stored["trip_key"].to_list() == features["trip_key"].to_list()
        use_tracking_store(loop)
        served = mlflow.sklearn.load_model(f"models:/nyc-taxi-trip-duration/{expected_version}")
        expected = served.predict(model_input(features, ALL_FEATURES))
        assert np.allclose(stored["predicted_duration_min"].to_numpy(), expected)
        assert meta["mean_predicted_min"] == pytest.approx(float(expected.mean()))


def use_tracking_store(loop: Loop) -> None:
    """Point the mlflow module at the loop's store, to load registered models by URI."""
    mlflow.set_tracking_uri(loop.settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(loop.settings.mlflow_tracking_uri)


def test_evaluating_a_day_without_trips_fails_naming_the_partition(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"ML_ASSETS_SOURCE": "sample", "ML_ASSETS_DATA_DIR": str(tmp_path)}
    )
    no_trips = pl.LazyFrame(schema=FEATURE_SCHEMA)

    # Waiting adds no trips to the day: the step fails at once, without a retry. The context is
    # closed on leaving the block: left to the garbage collector (the traceback keeps it), its
    # ephemeral instance would hand the Dagster instance that was current when it was built back
    # to whichever later test of this worker it is collected in.
    with (
        dg.build_asset_context(partition_key="2021-01-05") as context,
        pytest.raises(
            dg.Failure, match=r"^partition 2021-01-05: trip_features holds no trips"
        ) as failed,
    ):
        list(
            evaluation.model_evaluation(
                context,
                duration_model={"2021-01-04": {"version": "4"}},
                trip_features=no_trips,
                model_registry=build_resources(settings)["model_registry"],
                mlflow_tracking=None,  # type: ignore[arg-type]  # never reached
            )
        )
    assert failed.value.allow_retries is False
