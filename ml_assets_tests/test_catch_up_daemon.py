"""Catch-up after downtime against a real `dagster-daemon` on a temporary DAGSTER_HOME.

The loop ran for its first two days, then the machine was down: the last three days are missing.
With `catch_up_sensor` turned on (as a user does with `dagster sensor start`), the daemon fills
exactly those days by itself, oldest first, each evaluation after the model of the day before,
and nothing else.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import mlflow
import pytest

from ml_assets.assets import build_assets
from ml_assets.lib.catch_up import CATCH_UP_STEP_TAG, days_between
from ml_assets.partitions import DailyPartitioning
from ml_assets.resources import build_resources
from ml_assets.sensors.catch_up import CATCH_UP_INTERVAL_SECONDS
from ml_assets.sensors.loop_reading import IN_PROGRESS, run_days
from ml_assets.settings import Settings
from ml_assets_tests.conftest import local_instance
from ml_assets_tests.processes import default_signal_handling, stop_process_group

PROMOTION_JOB = "promotion_job"
"""Launched by `promote_evaluated_day` after each run that scored a day, catch-up runs included."""

CATCH_UP_DAYS = 3
TRAINING_WINDOW_DAYS = 2
DAILY = ("raw_trips", "trip_features", "duration_model", "model_evaluation")
DECISION = ("challenger_validation", "model_promotion")
LOOP = (*DAILY, "trip_duration_predictions")
FINISHED_WITHIN_SECONDS = 480
MODULE = ("-m", "ml_assets.definitions")


def _materialize_before_downtime(
    instance: dg.DagsterInstance, settings: Settings, assets: list[dg.AssetsDefinition], first: date
) -> None:
    """The first day (its data and model), then the second, evaluated and decided
    (the promotion gate of the first caught-up day waits for that decision), whose predictions were
    never made: a day outside the catch-up window that it must leave alone."""
    resources = build_resources(settings)
    for day, names in ((first, DAILY[:3]), (first + timedelta(days=1), (*DAILY, *DECISION))):
        result = dg.materialize(
            assets,
            selection=list(names),
            partition_key=day.isoformat(),
            resources=resources,
            instance=instance,
        )
        assert result.success


def _materializations(instance: dg.DagsterInstance, asset: str) -> list[dg.EventLogRecord]:
    return list(instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records)


def _days(records: list[dg.EventLogRecord]) -> list[date]:
    return [date.fromisoformat(record.partition_key) for record in records]  # type: ignore[arg-type]


def _filled(instance: dg.DagsterInstance, window: list[date]) -> bool:
    have = {asset: set(instance.get_materialized_partitions(dg.AssetKey(asset))) for asset in LOOP}
    everything = all(day.isoformat() in have[asset] for asset in LOOP for day in window)
    return everything and not instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS))


def _next_tick(
    instance: dg.DagsterInstance,
    sensor: str,
    since: float,
    daemon: subprocess.Popen,
    log: Path,
) -> Any:
    """The first finished tick of `sensor` that started after `since` (a Unix time)."""
    (state,) = (s for s in instance.all_instigator_state() if s.instigator_name == sensor)
    deadline = time.monotonic() + 3 * CATCH_UP_INTERVAL_SECONDS
    while time.monotonic() < deadline and daemon.poll() is None:
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, after=since)
        finished = [tick for tick in ticks if tick.status.value != "STARTED"]
        if finished:
            return min(finished, key=lambda tick: tick.timestamp)
        time.sleep(2)
    pytest.fail(f"no tick of {sensor} after the window was filled:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_the_daemon_fills_three_days_of_downtime_oldest_first_and_nothing_else(
    tmp_path: Path, local_dagster_env: dict[str, str]
) -> None:
    today = datetime.now(UTC).date()
    first = today - timedelta(days=CATCH_UP_DAYS + 2)
    window = days_between(today - timedelta(days=CATCH_UP_DAYS), today - timedelta(days=1))
    environment = {
        **local_dagster_env,
        "ML_ASSETS_START_DATE": first.isoformat(),
        "ML_ASSETS_TRAINING_WINDOW_DAYS": str(TRAINING_WINDOW_DAYS),
        "ML_ASSETS_CATCH_UP_DAYS": str(CATCH_UP_DAYS),
    }
    settings = Settings.from_env(environment)
    home = Path(environment["DAGSTER_HOME"])
    days = DailyPartitioning.starting(settings.start_date, settings.training_window_days)
    # One process creates the MLflow store: runs creating it at once race on its migrations.
    mlflow.MlflowClient(tracking_uri=settings.mlflow_tracking_uri).search_experiments()
    with local_instance(home) as instance:
        _materialize_before_downtime(instance, settings, build_assets(days), first)
        before = {run.run_id for run in instance.get_runs()}

    started = subprocess.run(
        [*(sys.executable, "-m", "dagster", "sensor", "start", "catch_up_sensor"), *MODULE],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
        start_new_session=True,
        preexec_fn=default_signal_handling,
    )
    assert started.returncode == 0, started.stdout + started.stderr

    log = tmp_path / "daemon.log"
    clock = time.monotonic()
    with log.open("w") as output:
        daemon = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", *MODULE],
            cwd=tmp_path,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=default_signal_handling,
        )
    try:
        with local_instance(home) as instance:
            while not _filled(instance, window):
                # A promotion whose gate the challenger does not pass fails by design.
                failed = [
                    run
                    for run in instance.get_runs(
                        filters=dg.RunsFilter(
                            statuses=[dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
                        )
                    )
                    if run.job_name != PROMOTION_JOB
                ]
                assert not failed, (
                    [(run.run_id, run.tags) for run in failed],
                    log.read_text()[-3000:],
                )
                if daemon.poll() is not None or time.monotonic() - clock > FINISHED_WITHIN_SECONDS:
                    pytest.fail(f"the window was not filled in time:\n{log.read_text()[-3000:]}")
                time.sleep(5)
            took = time.monotonic() - clock
            # The sensor's next tick, once the window is full, launches nothing.
            after_fill = _next_tick(instance, "catch_up_sensor", time.time(), daemon, log)
            assert after_fill.status.value == "SKIPPED", (after_fill.status, after_fill.run_ids)
            assert not after_fill.run_ids
    finally:
        stop_process_group(daemon)

    second = first + timedelta(days=1)
    with local_instance(home) as instance:
        records = {asset: _materializations(instance, asset) for asset in LOOP}
        # Exactly these days, each once: the days before the downtime untouched, the window filled,
        # and the predictions of the second day (outside the window) still missing.
        expected = {
            "raw_trips": [first, second, *window],
            "trip_features": [first, second, *window],
            "duration_model": [first, second, *window],
            "model_evaluation": [second, *window],
            "trip_duration_predictions": window,
        }
        for asset, wanted in expected.items():
            counts = Counter(_days(records[asset]))
            assert counts == Counter(wanted), (asset, sorted(counts.items()))

        # The evaluations ran oldest first, each after the model of the day before it.
        evaluations = sorted(records["model_evaluation"], key=lambda record: record.storage_id)
        assert _days(evaluations) == [second, *window]
        models = {
            date.fromisoformat(record.partition_key): record.storage_id  # type: ignore[arg-type]
            for record in records["duration_model"]
        }
        for record in evaluations:
            day = date.fromisoformat(record.partition_key)  # type: ignore[arg-type]
            assert models[day - timedelta(days=1)] < record.storage_id, day

        # Every run the daemon launched is a catch-up run over days of the window, and succeeded,
        # or the promotion of a day the catch-up scored.
        launched = [
            record
            for record in instance.get_run_records()
            if record.dagster_run.run_id not in before
        ]
        promotions = [r.dagster_run for r in launched if r.dagster_run.job_name == PROMOTION_JOB]
        # Promotions follow the scoring runs through their own sensor (every 30 s), so the
        # latest may still be on its way when the window is full: each is of a scored day.
        promoted_days = [run.tags["dagster/partition"] for run in promotions]
        assert promoted_days, "no promotion followed the catch-up's scoring runs"
        assert set(promoted_days) <= {day.isoformat() for day in window}, promoted_days
        launched = [r for r in launched if r.dagster_run.job_name != PROMOTION_JOB]
        steps = Counter()
        for record in launched:
            run = record.dagster_run
            assert run.tags.get(CATCH_UP_STEP_TAG), (run.job_name, run.tags)
            assert run.status == dg.DagsterRunStatus.SUCCESS, (run.run_id, run.status)
            assert set(run_days(run.tags)) <= set(window), (run.tags, window)
            steps[run.tags[CATCH_UP_STEP_TAG]] += 1
        # One ingestion over the three missing days, a training and a scoring run per day.
        assert steps == Counter({"ingest": 1, "train": CATCH_UP_DAYS, "score": CATCH_UP_DAYS})
        scoring = sorted(
            (r for r in launched if r.dagster_run.tags[CATCH_UP_STEP_TAG] == "score"),
            key=lambda r: r.start_time or 0,
        )
        assert [run_days(r.dagster_run.tags)[0] for r in scoring] == window
        for earlier, later in itertools.pairwise(scoring):
            assert earlier.end_time is not None and later.start_time is not None
            assert earlier.end_time <= later.start_time
    print(f"catch-up of {CATCH_UP_DAYS} days took {took:.0f} s")
