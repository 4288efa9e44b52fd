"""`run_success_alert`: the day's numbers when a daily, training or loop run succeeds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dagster as dg
from dagster import DagsterEventType

from ml_assets.lib.notifications import Notification, run_success_message
from ml_assets.resources.notifier import Notifier
from ml_assets.sensors.run_events import metadata_values, new_run_endings, run_partition

SUCCESS_ALERT_JOBS = ("daily_job", "training_job", "ml_loop_job", "promotion_job")
"""The jobs whose successful runs are announced (the others' successes are routine or ad hoc)."""


@dataclass(frozen=True)
class RunNumbers:
    """What a daily or training run produced, read from its materializations."""

    raw_rows: int | None = None
    feature_rows: int | None = None
    model_version: str | None = None
    rmse: float | None = None
    baseline_rmse: float | None = None
    promoted: bool | None = None
    champion_version: str | None = None
    candidate_version: str | None = None
    candidate_link: str | None = None


def run_numbers(instance: dg.DagsterInstance, run_id: str) -> RunNumbers:
    """Rows, RMSE vs baseline and the champion decision of a run, from its materializations.

    A run over several days adds up its rows and reports its last evaluation. The evaluation's
    RMSE (the model trained through the day before, on the day) wins over the training
    validation RMSE when a run has both.
    """
    rows: dict[str, int] = {}
    trained: dict[str, Any] = {}
    evaluated: dict[str, Any] = {}
    decided: dict[str, Any] = {}
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
        key = entry.asset_materialization.asset_key.to_user_string()
        values = metadata_values(entry)
        if key in ("raw_trips", "trip_features"):
            rows[key] = rows.get(key, 0) + int(values.get("dagster/row_count", 0))
        elif key == "duration_model":
            trained = values
        elif key == "model_evaluation":
            evaluated = values
        elif key == "model_promotion":
            decided = values
    if evaluated.get("rmse") is not None:  # the first day's evaluation scores nothing
        rmse, baseline = evaluated.get("rmse"), evaluated.get("baseline_rmse")
    else:
        rmse, baseline = trained.get("val_rmse"), trained.get("baseline_val_rmse")
    # The promotion decision, when the run made one, names the champion after it; an evaluation
    # names the champion going into its day.
    champion = decided.get("champion_version") if decided else evaluated.get("champion_version")
    return RunNumbers(
        raw_rows=rows.get("raw_trips"),
        feature_rows=rows.get("trip_features"),
        model_version=None if not trained else str(trained.get("model_version")),
        rmse=rmse,
        baseline_rmse=baseline,
        promoted=decided.get("promoted") if decided else None,
        champion_version=None if champion is None else str(champion),
        candidate_version=decided.get("candidate_version"),
        candidate_link=decided.get("model_version_link")
        if decided.get("candidate_version")
        else None,
    )


def success_notification(
    instance: dg.DagsterInstance, run: dg.DagsterRun, ui_url: str
) -> Notification:
    """The message of one successful run, with the numbers it produced."""
    numbers = run_numbers(instance, run.run_id)
    return run_success_message(
        job=run.job_name,
        run_id=run.run_id,
        partition=run_partition(run),
        raw_rows=numbers.raw_rows,
        feature_rows=numbers.feature_rows,
        rmse=numbers.rmse,
        baseline_rmse=numbers.baseline_rmse,
        promoted=numbers.promoted,
        champion_version=numbers.champion_version,
        model_version=numbers.model_version,
        candidate_version=numbers.candidate_version,
        candidate_link=numbers.candidate_link,
        ui_url=ui_url,
    )


@dg.sensor(
    name="run_success_alert",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def run_success_alert(context: dg.SensorEvaluationContext, notifier: Notifier) -> dg.SkipReason:
    """Announces every successful `daily_job`, `training_job`, `ml_loop_job` and `promotion_job`
    run with the day's numbers: trips and feature rows, the model trained, RMSE against the naive
    baseline, and whether a new champion was promoted or a candidate awaits approval (with a
    link to its MLflow version).

    Runs of every origin are covered, `dagster job execute` included. Turned on for the first
    time, it starts from that moment.
    """
    instance = context.instance
    new = new_run_endings(instance, context.cursor, [DagsterEventType.RUN_SUCCESS])
    context.update_cursor(new.cursor)
    if new.started:
        return dg.SkipReason("started: runs succeeding from now on are announced")
    announced = 0
    for run_id in dict.fromkeys(ending.run_id for ending in new.endings):
        run = instance.get_run_by_id(run_id)
        if run is None or run.job_name not in SUCCESS_ALERT_JOBS:
            continue
        notifier.send(success_notification(instance, run, notifier.ui_url), log=context.log)
        announced += 1
    return dg.SkipReason(f"{announced} successful run(s) announced")
