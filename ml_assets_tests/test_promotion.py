"""Promotion people can trust: the gate, manual approval, rollback, an alias moved outside
Dagster, the labels a long backfill leaves in the registry, and the evaluation reports.

The gate's comparisons are checked directly (fast). Everything else runs the real loop on the
offline sample source, in-process, with MLflow on a local SQLite store: `ml_loop_job` day by day,
then `promotion_job` for each evaluated day, as the `promote_evaluated_day` sensor launches it.
"""

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import mlflow
import polars as pl
import pytest
from mlflow import MlflowClient
from PIL import Image

from ml_assets.assets.first_day import first_day_record
from ml_assets.checks.promotion_gate import challenger_beats_baseline, challenger_beats_champion
from ml_assets.definitions import build_definitions
from ml_assets.lib.evaluation_reports import DPI, FIGURE_INCHES, REPORTS
from ml_assets.lib.promotion_gate import RMSE, gate
from ml_assets.lib.registry import ModelRegistry
from ml_assets.lib.registry_labels import CHAMPION_ALIAS, Decision
from ml_assets.sensors.champion import champion_alias_sensor
from ml_assets.sensors.success_alerts import success_notification
from ml_assets.settings import Settings

FIRST = date(2021, 1, 1)


def _day(offset: int) -> str:
    return (FIRST + timedelta(days=offset)).isoformat()


def _metrics(rmse: float) -> dict[str, float]:
    return {RMSE: rmse, "mean_absolute_error": rmse * 0.7}


# The gate, with MLflow's own model validation.


def test_the_gate_passes_a_challenger_that_beats_the_champion_by_the_margin() -> None:
    result = gate(_metrics(4.0), _metrics(5.0), against="champion", margin=0.1)
    assert result.passed
    assert result.message == "challenger RMSE 4.000 is 10.0% lower than the champion's 5.000"
    assert result.required_rmse == pytest.approx(4.5)
    # Nothing to beat yet: the first challenger passes.
    assert gate(_metrics(4.0), None, against="champion").passed


def test_the_gate_fails_a_challenger_short_of_the_margin_saying_why() -> None:
    result = gate(_metrics(4.9), _metrics(5.0), against="champion", margin=0.05)
    assert not result.passed
    assert result.message.startswith(
        "challenger RMSE 4.900 is not 5.0% lower than the champion's 5.000 on the same trips "
        "(MLflow: Metric root_mean_squared_error minimum relative change check failed"
    )
    # Without a margin, lower at all passes; equal does not.
    assert gate(_metrics(4.9), _metrics(5.0), against="champion").passed
    assert not gate(_metrics(5.0), _metrics(5.0), against="champion").passed


def _validation(margin: float) -> dict[str, Any]:
    """A `challenger_validation` record of one day, from MLflow's validation."""
    challenger = _metrics(6.0)
    return {
        "champion": asdict(gate(challenger, _metrics(7.0), against="champion", margin=margin)),
        "baseline": asdict(gate(challenger, _metrics(5.5), against="baseline")),
    }


def test_the_gate_checks_fail_with_error_naming_the_day_and_the_numbers() -> None:
    beats_baseline = challenger_beats_baseline({"2021-01-05": _validation(0.0)})
    assert not beats_baseline.passed
    assert beats_baseline.severity == dg.AssetCheckSeverity.ERROR
    assert beats_baseline.description is not None
    assert beats_baseline.description.startswith(
        "2021-01-05: challenger RMSE 6.000 is not lower than the baseline's 5.500"
    )
    assert beats_baseline.metadata["failing_days"].value == ["2021-01-05"]

    on_margin = challenger_beats_champion({"2021-01-05": _validation(0.2)})
    assert not on_margin.passed
    assert "is not 20.0% lower than the champion's 7.000" in (on_margin.description or "")
    passed = challenger_beats_champion({"2021-01-05": _validation(0.1)})
    assert passed.passed
    assert passed.description == (
        "2021-01-05: challenger RMSE 6.000 is 10.0% lower than the champion's 7.000"
    )


def test_the_gate_of_the_first_day_has_nothing_to_judge_and_says_so() -> None:
    record = first_day_record(date(2021, 1, 1), "there is no challenger to gate")
    for check in (challenger_beats_champion, challenger_beats_baseline):
        result = check({"2021-01-01": record})
        assert result.passed
        assert result.description == (
            "2021-01-01: the first day of the loop (ML_ASSETS_START_DATE): no model was trained "
            "before it; there is no challenger to gate"
        )


# The registry's record of one day's decision, withdrawn.


def test_withdrawing_a_day_restores_the_champion_before_it_and_ends_its_candidacy(
    tmp_path: Path,
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("m")
    for number in range(3):
        client.create_model_version("m", source=str(tmp_path / f"model{number}"))
    registry = ModelRegistry(uri, "m")
    first, second = date.fromisoformat(_day(1)), date.fromisoformat(_day(2))
    gate_passed = Decision("promoted", _day(1), "promotion gate (auto)", "passed")
    registry.promote(registry.version("1"), first, gate_passed)
    registry.promote(registry.version("2"), second, replace(gate_passed, day=_day(2)))
    registry.mark_candidate(registry.version("3"), second, replace(gate_passed, kind="candidate"))

    withdrawal = registry.withdraw_decisions_of(
        second, Decision("withdrawn", _day(2), "promotion gate", "failed on a later run")
    )
    assert (withdrawal.promoted, withdrawal.candidates) == (["2"], ["3"])
    assert withdrawal.champion is not None and withdrawal.champion.version == "1"
    assert registry.current_champion() == withdrawal.champion
    assert registry.champion_going_into(date.fromisoformat(_day(3))) == withdrawal.champion
    champion = registry.tags_of("1")
    assert (champion["status"], champion["champion_since"]) == ("champion", _day(1))
    for version in ("2", "3"):
        tags = registry.tags_of(version)
        assert (tags["status"], tags["withdrawn_on"], tags["decision"]) == (
            "withdrawn",
            _day(2),
            "withdrawn",
        )
        assert "promoted_on" not in tags
    assert registry.versions_with_status("candidate") == []

    # The only promotion left, withdrawn: no champion, no alias.
    last = registry.withdraw_decisions_of(
        first, Decision("withdrawn", _day(1), "promotion gate", "failed on a later run")
    )
    assert (last.promoted, last.champion) == (["1"], None)
    assert registry.current_champion() is None
    assert registry.tags_of("1")["status"] == "withdrawn"


# The loop, in-process.


@dataclass
class Loop:
    settings: Settings
    instance: dg.DagsterInstance
    runs: dict[str, dg.ExecuteInProcessResult]
    promotions: dict[str, dg.ExecuteInProcessResult]
    environment: dict[str, str]
    """The loop's own settings (such as manual approval), on top of the sample defaults."""

    @property
    def client(self) -> MlflowClient:
        uri = self.settings.mlflow_tracking_uri
        return MlflowClient(tracking_uri=uri, registry_uri=uri)

    @property
    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.settings.mlflow_tracking_uri, self.settings.model_name)

    def defs(self, **environment: str) -> dg.Definitions:
        """The definitions with these settings on top (same data dir and stores)."""
        return build_definitions(
            _settings(self.settings.data_dir, **{**self.environment, **environment})
        )

    def champion(self) -> str:
        alias = self.client.get_model_version_by_alias(self.settings.model_name, CHAMPION_ALIAS)
        return str(alias.version)

    def tags(self, version: str) -> dict[str, str]:
        return dict(self.client.get_model_version(self.settings.model_name, version).tags)

    def metadata(self, day: str, asset: str) -> dict[str, Any]:
        (event,) = [
            event
            for event in self.runs[day].get_asset_materialization_events()
            if event.asset_key == dg.AssetKey(asset)
        ]
        return {key: value.value for key, value in event.materialization.metadata.items()}

    def run_day(
        self,
        day: str,
        defs: dg.Definitions | None = None,
        promote: bool = True,
        run_config: dict[str, Any] | None = None,
    ) -> None:
        defs = defs or self.defs()
        self.runs[day] = defs.resolve_job_def("ml_loop_job").execute_in_process(
            instance=self.instance, partition_key=day, run_config=run_config or {}
        )
        if promote and day != _day(0):
            self.promote(day, defs)

    def promote(
        self, day: str, defs: dg.Definitions | None = None, wait_seconds: float | None = None
    ) -> dg.ExecuteInProcessResult:
        """promotion_job of `day`; `wait_seconds` bounds the wait for the day before's decision."""
        defs = defs or self.defs()
        config = (
            {"previous_decision_wait_seconds": wait_seconds} if wait_seconds is not None else {}
        )
        result = defs.resolve_job_def("promotion_job").execute_in_process(
            instance=self.instance,
            partition_key=day,
            run_config={"ops": {"challenger_validation": {"config": config}}},
            raise_on_error=False,
        )
        self.promotions[day] = result
        return result

    def predict(self, day: str, wait_seconds: float) -> dg.ExecuteInProcessResult:
        """trip_duration_predictions of `day` alone, in a run tagged as a backfill's."""
        config = {"previous_decision_wait_seconds": wait_seconds}
        return (
            self.defs()
            .resolve_job_def("ml_loop_job")
            .execute_in_process(
                instance=self.instance,
                partition_key=day,
                asset_selection=[dg.AssetKey("trip_duration_predictions")],
                tags={"dagster/backfill": "walk-forward"},
                run_config={"ops": {"trip_duration_predictions": {"config": config}}},
                raise_on_error=False,
            )
        )

    def decide(self, job: str, config: dict[str, str]) -> dg.ExecuteInProcessResult:
        op = "review_candidate" if job == "review_candidate_job" else "rollback_champion"
        return (
            self.defs()
            .resolve_job_def(job)
            .execute_in_process(
                instance=self.instance,
                run_config={"ops": {op: {"config": config}}},
                raise_on_error=False,
            )
        )


SMALL_MODEL = {"ops": {"duration_model": {"config": {"max_iter": 30, "max_leaf_nodes": 15}}}}
"""Fewer, smaller trees: a long backfill about the registry, not the model, runs quicker."""


def _settings(data_dir: Path, **environment: str) -> Settings:
    return Settings.from_env(
        {
            "ML_ASSETS_SOURCE": "sample",
            "ML_ASSETS_DATA_DIR": str(data_dir),
            # A week of training data keeps a long backfill quick.
            "ML_ASSETS_TRAINING_WINDOW_DAYS": "7",
            **environment,
        }
    )


@pytest.fixture
def new_loop(tmp_path: Path) -> Iterator[Any]:
    """A function starting a fresh loop (own data dir and Dagster instance) with settings."""
    tracking, registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    with dg.instance_for_test() as instance:

        def start(**environment: str) -> Loop:
            settings = _settings(tmp_path / "data", **environment)
            zones = (
                build_definitions(settings)
                .resolve_implicit_global_asset_job_def()
                .execute_in_process(instance=instance, asset_selection=[dg.AssetKey("taxi_zones")])
            )
            assert zones.success
            return Loop(settings, instance, {}, {}, environment)

        yield start
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(registry)


def _observations(instance: dg.DagsterInstance) -> list[dict[str, Any]]:
    """The metadata of every observation of `champion_model`, oldest first."""
    records = instance.fetch_observations(dg.AssetKey("champion_model"), limit=100).records
    return [
        {key: value.value for key, value in record.asset_observation.metadata.items()}
        for record in reversed(records)
        if record.asset_observation is not None
    ]


def _failed_checks(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    return {
        evaluation.check_name: evaluation.description or ""
        for evaluation in result.get_asset_check_evaluations()
        if not evaluation.passed
    }


def _validation_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    (materialization,) = result.asset_materializations_for_node("challenger_validation")
    return {key: value.value for key, value in materialization.metadata.items()}


def _failure(result: dg.ExecuteInProcessResult, node: str) -> str:
    return str(result.failure_data_for_node(node).error)  # type: ignore[union-attr]


@pytest.mark.slow
def test_the_gate_in_day_order_withdrawal_rollback_and_an_alias_moved_outside_dagster(
    new_loop: Any,
) -> None:
    """One loop for every decision about the champion (each loop day fits a model: seconds)."""
    loop: Loop = new_loop()
    loop.run_day(_day(0))
    # Days 1 and 2 are evaluated before either is decided, as in a catch-up or a backfill.
    loop.run_day(_day(1), promote=False)
    loop.run_day(_day(2), promote=False)
    assert loop.metadata(_day(2), "model_evaluation")["champion_version"] is None

    # The decision of day 1 is pending (evaluated, not validated): the gate of day 2 waits for it,
    # then fails naming the step to run.
    still_pending = (
        f"partition {_day(2)}: the promotion decision of {_day(1)} is still pending after 1 s "
        f"(model_evaluation of {_day(1)} is newer than its challenger_validation: run "
        f"promotion_job for {_day(1)} first)"
    )
    waited = loop.promote(_day(2), wait_seconds=1)
    assert not waited.success
    assert still_pending in _failure(waited, "challenger_validation")
    logged = [entry.user_message for entry in loop.instance.all_logs(waited.run_id)]
    assert any(
        message.startswith(
            f"partition {_day(2)}: waiting up to 1 s for the promotion decision of {_day(1)}: "
            f"model_evaluation of {_day(1)} is newer than its challenger_validation"
        )
        for message in logged
    )
    # Day 2's predictions in a backfill, where days are scored side by side, wait for it too.
    in_backfill = loop.predict(_day(2), wait_seconds=1)
    assert not in_backfill.success
    assert (
        f"{still_pending}; trip_duration_predictions of {_day(2)} must use the champion that "
        f"decision leaves going into {_day(2)}"
    ) in _failure(in_backfill, "trip_duration_predictions")
    # Validated and passed, but not promoted yet: still pending, on model_promotion.
    validated = (
        loop.defs()
        .resolve_job_def("promotion_job")
        .execute_in_process(
            instance=loop.instance,
            partition_key=_day(1),
            asset_selection=[dg.AssetKey("challenger_validation")],
        )
    )
    assert _validation_metadata(validated)["beats_baseline"] is True
    assert (
        f"(challenger_validation of {_day(1)} passed the promotion gate but model_promotion of "
        f"{_day(1)} has not run since: run promotion_job for {_day(1)} first)"
    ) in _failure(loop.promote(_day(2), wait_seconds=0), "challenger_validation")

    # Day 1: v1 has no champion to beat and beats the baseline: promoted.
    first = loop.promote(_day(1))
    assert first.success
    assert loop.champion() == "1"
    assert loop.tags("1")["status"] == "champion"
    assert loop.tags("1")["decision"] == "promoted"
    promoted = first.asset_materializations_for_node("model_promotion")[0].metadata
    assert promoted["outcome"].value == "promoted"
    assert promoted["champion_version"].value == "1"
    # Day 2 was scored before day 1 was decided (outside a backfill, nothing waited), so its
    # predictions came from v2, the model its evaluation named. Made again, now that day 1 is
    # decided, they come from v1: the champion going into day 2.
    assert loop.metadata(_day(2), "trip_duration_predictions")["model_version"] == "2"
    repredicted = loop.predict(_day(2), wait_seconds=0)
    assert repredicted.success
    (made,) = repredicted.asset_materializations_for_node("trip_duration_predictions")
    assert made.metadata["model_version"].value == "1"

    # Day 2, with a margin no challenger can meet: the gate fails, says why, nothing moves. It
    # compares with v1, the champion going into day 2 now (day 1 was decided after day 2 was
    # evaluated), which the validation scores on day 2's trips itself.
    evaluation = loop.metadata(_day(2), "model_evaluation")
    strict = loop.promote(_day(2), loop.defs(ML_ASSETS_PROMOTION_MARGIN="0.9"))
    assert not strict.success
    validation = _validation_metadata(strict)
    assert validation["compared_with_champion"] == "1"
    assert validation["champion_scored_by_evaluation"] is None
    assert validation["champion_rescored"] is True
    assert validation["withdrawn_versions"] is None  # day 2 had decided nothing yet
    champion_rmse = strict.output_for_node("challenger_validation")["metrics"]["champion_rmse"]
    failed = _failed_checks(strict)
    assert list(failed) == ["challenger_beats_champion"]
    assert failed["challenger_beats_champion"].startswith(
        f"{_day(2)}: challenger RMSE {evaluation['rmse']:.3f} is not 90.0% lower than the "
        f"champion's {champion_rmse:.3f} on the same trips (MLflow: "
    )
    assert strict.asset_materializations_for_node("model_promotion") == []
    assert loop.champion() == "1"
    assert "status" not in loop.tags("2")
    # The default margin (0): v2 is better than v1 on day 2's trips and is promoted.
    assert evaluation["rmse"] < champion_rmse
    assert loop.promote(_day(2)).success
    assert loop.champion() == "2"
    assert (loop.tags("1")["status"], loop.tags("1")["retired_on"]) == ("retired", _day(2))

    # Day 2 evaluated again (as after a retrain) scores v1 as the validation did...
    reevaluated = (
        loop.defs()
        .resolve_job_def("model_evaluation_job")
        .execute_in_process(instance=loop.instance, partition_key=_day(2))
    )
    (scored,) = reevaluated.asset_materializations_for_node("model_evaluation")
    assert scored.metadata["champion_version"].value == "1"
    assert scored.metadata["champion_rmse"].value == pytest.approx(champion_rmse)
    # ...and its gate, now failed, withdraws the earlier promotion of day 2: v1 is back.
    withdrawn = loop.promote(_day(2), loop.defs(ML_ASSETS_PROMOTION_MARGIN="0.9"))
    assert not withdrawn.success
    assert list(_failed_checks(withdrawn)) == ["challenger_beats_champion"]
    assert withdrawn.asset_materializations_for_node("model_promotion") == []
    validation = _validation_metadata(withdrawn)
    assert (validation["withdrawn_versions"], validation["champion_rescored"]) == ("2", False)
    assert loop.champion() == "1"
    tags = loop.tags("2")
    assert "promoted_on" not in tags
    assert (tags["status"], tags["withdrawn_on"], tags["decision"]) == (
        "withdrawn",
        _day(2),
        "withdrawn",
    )
    assert tags["decided_by"] == "promotion gate (a later run of the day failed it)"
    assert tags["decision_reason"].startswith(
        "the promotion gate of the day failed on a later run: challenger RMSE "
    )
    assert json.loads(tags["decision_metrics"])["margin"] == 0.9
    assert (loop.tags("1")["status"], loop.tags("1")["champion_since"]) == ("champion", _day(1))
    observed = _observations(loop.instance)[-1]
    assert (observed["decision"], observed["champion_version"]) == ("withdrawn", "1")
    assert (observed["decision_day"], observed["serves_from"]) == (_day(2), _day(3))
    assert observed["metrics"]["withdrawn_versions"] == ["2"]
    # The next day's predictions are made by the restored champion.
    loop.run_day(_day(3), promote=False)
    assert loop.metadata(_day(3), "trip_duration_predictions")["model_version"] == "1"

    # A person overrules the gate from the Launchpad: back to v2. Recorded, and the next day's
    # predictions use it.
    rollback = loop.decide(
        "rollback_champion_job",
        {"version": "2", "reason": "the 90 % margin was a typo", "decided_by": "alice"},
    )
    assert rollback.success
    assert loop.champion() == "2"
    tags = loop.tags("2")
    assert (tags["status"], tags["decision"], tags["decided_by"]) == (
        "champion",
        "rolled_back",
        "alice",
    )
    assert tags["decision_reason"] == "the 90 % margin was a typo"
    assert tags["chosen_on"].startswith(f"{_day(3)}/")  # the latest evaluated day
    assert json.loads(tags["decision_metrics"])["replaced_version"] == "1"
    assert loop.tags("1")["status"] == "retired"
    observed = _observations(loop.instance)[-1]
    assert (observed["champion_version"], observed["decision"]) == ("2", "rolled_back")
    assert (observed["decided_by"], observed["serves_from"]) == ("alice", _day(4))
    # The predictions of days already made are kept; day 4 is served by v2.
    assert loop.registry.champion_going_into(date.fromisoformat(_day(3))).version == "1"  # type: ignore[union-attr]
    loop.run_day(_day(4), promote=False)
    assert loop.metadata(_day(4), "trip_duration_predictions")["model_version"] == "2"
    predictions = pl.read_parquet(
        loop.settings.assets_dir / "trip_duration_predictions" / f"{_day(4)}.parquet"
    )
    assert predictions["model_version"].unique().to_list() == ["2"]
    # Rolling back to the champion itself is refused, naming the field.
    again = loop.decide("rollback_champion_job", {"version": "2", "reason": "again"})
    assert not again.success
    assert "ChampionRollback.version: v2 is already the champion" in _failure(
        again, "rollback_champion"
    )

    # Someone moves the alias to v3 in MLflow: the sensor confirms it on a second tick, records
    # it, and the next day's predictions use v3.
    loop.client.set_registered_model_alias(loop.settings.model_name, CHAMPION_ALIAS, "3")
    resources = {"model_registry": build_definitions(loop.settings).resources["model_registry"]}
    with dg.build_sensor_context(instance=loop.instance, resources=resources) as context:
        first_tick = champion_alias_sensor(context)
        assert isinstance(first_tick, dg.SkipReason)
        assert "confirming on the next tick" in (first_tick.skip_message or "")
        second_tick = champion_alias_sensor(context)
    assert isinstance(second_tick, dg.SensorResult)
    (observation,) = second_tick.asset_events
    assert observation.asset_key == dg.AssetKey("champion_model")
    assert observation.metadata["champion_version"].value == "3"
    assert observation.metadata["decision"].value == "moved_outside_dagster"
    assert loop.tags("3")["decision"] == "moved_outside_dagster"
    assert loop.tags("2")["status"] == "retired"
    assert loop.registry.recorded_champion().version == "3"  # type: ignore[union-attr]
    loop.run_day(_day(5), promote=False)
    assert loop.metadata(_day(5), "trip_duration_predictions")["model_version"] == "3"
    # Seen and recorded: the next tick has nothing to do.
    with dg.build_sensor_context(instance=loop.instance, resources=resources) as context:
        assert isinstance(champion_alias_sensor(context), dg.SkipReason)

    # The sensor asks for the promotion of each evaluated day, from its first look on.
    sensor = loop.defs().get_sensor_def("promote_evaluated_day")
    with dg.build_sensor_context(instance=loop.instance) as context:
        first_look = sensor(context)
        assert isinstance(first_look, dg.SensorResult)
        assert not first_look.run_requests
        context.update_cursor(first_look.cursor)
        loop.run_day(_day(6), promote=False)
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    (request,) = result.run_requests or []
    assert request.partition_key == _day(6)
    assert request.tags["ml_assets/evaluation_run"] == loop.runs[_day(6)].run_id


@pytest.mark.slow
def test_a_challenger_worse_than_the_baseline_is_never_promoted(new_loop: Any) -> None:
    loop: Loop = new_loop()
    loop.run_day(_day(0))
    # Day 1's model sees only the hour and day of week: worse than a per-zone-pair mean.
    time_only = {"ops": {"duration_model": {"config": {"feature_groups": ["time"]}}}}
    loop.runs[_day(1)] = (
        loop.defs()
        .resolve_job_def("ml_loop_job")
        .execute_in_process(instance=loop.instance, partition_key=_day(1), run_config=time_only)
    )
    assert loop.promote(_day(1)).success  # v1 (all features) becomes champion
    loop.run_day(_day(2), promote=False)
    result = loop.promote(_day(2))
    assert not result.success
    failed = _failed_checks(result)
    evaluation = loop.metadata(_day(2), "model_evaluation")
    assert failed["challenger_beats_baseline"].startswith(
        f"{_day(2)}: challenger RMSE {evaluation['rmse']:.3f} is not lower than the baseline's "
        f"{evaluation['baseline_rmse']:.3f}"
    )
    assert loop.champion() == "1"
    assert "status" not in loop.tags("2")


@pytest.mark.slow
def test_manual_approval_makes_candidates_a_person_approves_or_rejects(new_loop: Any) -> None:
    loop: Loop = new_loop(ML_ASSETS_PROMOTION_APPROVAL="manual")
    for offset in range(3):
        loop.run_day(_day(offset))
    # Both challengers passed the gate and wait as candidates; nothing is champion yet.
    assert [m.version for m in loop.registry.versions_with_status("candidate")] == ["1", "2"]
    assert loop.registry.current_champion() is None
    decided = loop.promotions[_day(2)].asset_materializations_for_node("model_promotion")
    assert decided[0].metadata["outcome"].value == "candidate"
    assert decided[0].metadata["candidate_version"].value == "2"
    # The success message says so, with the link to the version.
    run = loop.instance.get_run_by_id(loop.promotions[_day(2)].run_id)
    message = success_notification(loop.instance, run, "http://ui").body  # type: ignore[arg-type]
    assert "v2 passed the gate and is a candidate awaiting approval" in message
    assert "review_candidate_job" in message
    assert (
        f"{loop.settings.mlflow_ui_url}/#/models/{loop.settings.model_name}/versions/2" in message
    )

    # A version that is not a candidate cannot be approved.
    wrong = loop.decide(
        "review_candidate_job", {"version": "3", "decision": "approve", "reason": "why not"}
    )
    assert not wrong.success
    assert "CandidateReview.version: v3 is not a candidate (status: none); candidates: v1, v2" in (
        str(wrong.failure_data_for_node("review_candidate").error)  # type: ignore[union-attr]
    )

    rejected = loop.decide(
        "review_candidate_job",
        {
            "version": "1",
            "decision": "reject",
            "reason": "trained on a holiday",
            "decided_by": "bob",
        },
    )
    assert rejected.success
    tags = loop.tags("1")
    assert (tags["status"], tags["decision"], tags["decided_by"]) == ("rejected", "rejected", "bob")
    assert tags["decision_reason"] == "trained on a holiday"

    approved = loop.decide(
        "review_candidate_job",
        {"version": "2", "decision": "approve", "reason": "better on every borough"},
    )
    assert approved.success
    assert loop.champion() == "2"
    tags = loop.tags("2")
    assert (tags["status"], tags["decision"]) == ("champion", "approved")
    assert tags["decided_by"] == "unknown (no decided_by)"
    assert tags["decided_at"].endswith("Z")
    assert json.loads(tags["decision_metrics"])["challenger_rmse"] == pytest.approx(
        loop.metadata(_day(2), "model_evaluation")["rmse"]
    )
    (output,) = [event for event in approved.all_node_events if event.is_successful_output]
    recorded = {k: v.value for k, v in output.step_output_data.metadata.items()}
    assert (recorded["decision"], recorded["decision_day"], recorded["champion_version"]) == (
        "approved",
        _day(2),
        "2",
    )
    assert recorded["serves_from"] == _day(3)
    observed = _observations(loop.instance)[-1]
    assert (observed["decision"], observed["champion_version"]) == ("approved", "2")
    # The next day's predictions are made by the approved version.
    loop.run_day(_day(3), promote=False)
    assert loop.metadata(_day(3), "trip_duration_predictions")["model_version"] == "2"


@pytest.mark.slow
def test_a_long_backfill_leaves_a_registry_a_person_can_read(new_loop: Any) -> None:
    days = 21
    loop: Loop = new_loop()
    for offset in range(days):
        loop.run_day(_day(offset), run_config=SMALL_MODEL)
    name = loop.settings.model_name
    versions = {str(v.version): v for v in loop.client.search_model_versions(f"name='{name}'")}
    assert len(versions) == days  # every daily model is a version, labelled by what became of it
    labelled = loop.client.search_model_versions(f"name='{name}' and tags.status != ''")
    statuses = {str(v.version): v.tags["status"] for v in labelled}
    assert set(statuses.values()) <= {"champion", "retired"}
    # Exactly one champion, the alias's; every version that ever served is labelled.
    (champion,) = loop.client.search_model_versions(f"name='{name}' and tags.status = 'champion'")
    assert str(champion.version) == loop.champion()
    promoted = {number for number, v in versions.items() if "promoted_on" in v.tags}
    assert set(statuses) == promoted
    for number in promoted:
        tags = versions[number].tags
        assert tags["decision"] == "promoted"
        assert tags["champion_since"] == tags["promoted_on"]
        assert json.loads(tags["decision_metrics"])["challenger_version"] == number
        if statuses[number] == "retired":
            assert tags["retired_on"] > tags["champion_since"]
    # Versions that never passed the gate carry no status at all.
    for day, promotion in loop.promotions.items():
        evaluated = loop.metadata(day, "model_evaluation")["challenger_version"]
        assert (evaluated in promoted) == promotion.success, day
    # Every day's predictions name the version that made them: the champion going into the day.
    for offset in range(1, days):
        day = _day(offset)
        served = loop.metadata(day, "trip_duration_predictions")["model_version"]
        expected = loop.registry.champion_going_into(date.fromisoformat(day))
        assert served == (expected.version if expected else "1"), day


@pytest.mark.slow
def test_each_evaluation_logs_reports_to_its_mlflow_run_and_shows_them(new_loop: Any) -> None:
    loop: Loop = new_loop()
    for offset in range(4):
        loop.run_day(_day(offset))
    meta = loop.metadata(_day(3), "model_evaluation")
    run_id = meta["mlflow_run"].rsplit("/", 1)[-1]
    run = loop.client.get_run(run_id)
    assert run.data.tags["mlflow.runName"] == f"evaluation {_day(3)}"
    assert run.data.tags["dagster_partition"] == _day(3)
    assert run.data.metrics["challenger_root_mean_squared_error"] == pytest.approx(meta["rmse"])
    assert run.data.metrics["baseline_root_mean_squared_error"] == pytest.approx(
        meta["baseline_rmse"]
    )
    folder = Path(meta["reports_uri"])
    assert sorted(path.name for path in folder.iterdir()) == sorted(f"{n}.png" for n in REPORTS)
    expected_size = (int(FIGURE_INCHES[0] * DPI), int(FIGURE_INCHES[1] * DPI))
    for name in REPORTS:
        path = folder / f"{name}.png"
        assert path.stat().st_size > 5_000, name  # drawn, not blank
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.size == expected_size
            assert len(image.getcolors(maxcolors=100_000) or []) > 10, name
    # The asset page shows the same figures next to the numbers.
    report = meta["evaluation_report"]
    assert report.count("](data:image/png;base64,") == len(REPORTS)
    for name in REPORTS:
        assert f"![{name}]" in report
    # And linked to the MLflow UI, which serves them (the page itself fetches nothing from it).
    served = meta["evaluation_report_from_mlflow"]
    for name in REPORTS:
        assert (
            f"[{name.replace('_', ' ')}]({loop.settings.mlflow_ui_url}/get-artifact?path=reports/"
            f"{name}.png&run_uuid={run_id})"
        ) in served
    assert "![" not in served


def test_promotion_settings_are_checked_when_the_code_location_loads(tmp_path: Path) -> None:
    from ml_assets.settings import SettingsError

    base = {"ML_ASSETS_SOURCE": "sample", "ML_ASSETS_DATA_DIR": str(tmp_path)}
    settings = Settings.from_env(
        {**base, "ML_ASSETS_PROMOTION_MARGIN": "0.02", "ML_ASSETS_PROMOTION_APPROVAL": "manual"}
    )
    policy = build_definitions(settings).resources["promotion_policy"]
    assert (policy.margin, policy.approval) == (0.02, "manual")
    assert (
        Settings.from_env(base).promotion_margin,
        Settings.from_env(base).promotion_approval,
    ) == (
        0.0,
        "auto",
    )
    with pytest.raises(SettingsError) as margin:
        Settings.from_env({**base, "ML_ASSETS_PROMOTION_MARGIN": "5%"})
    assert str(margin.value) == (
        "ML_ASSETS_PROMOTION_MARGIN='5%': expected a share from 0 to below 1, "
        "such as 0.02 (2 % lower RMSE)"
    )
    with pytest.raises(SettingsError) as approval:
        Settings.from_env({**base, "ML_ASSETS_PROMOTION_APPROVAL": "sometimes"})
    assert str(approval.value) == (
        "ML_ASSETS_PROMOTION_APPROVAL='sometimes': expected one of auto, manual"
    )
