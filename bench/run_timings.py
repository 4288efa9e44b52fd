"""Where a Dagster backfill's time went, read back from the instance and the MLflow store.

`run_stats` reads, in a child process with the instance's environment, every run of a backfill
and every `promotion_job` run: their records, queue and launch events and step stats, and when
each step's MLflow runs started and ended. `attribute` sums those seconds by where they went: the
run queue, starting a run's process (interpreter, imports, code location, run plan), each step
(a training step split into its days' MLflow runs and the rest), the run's own bookkeeping outside
its steps, and the time when no run was queued or running.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from typing import Any

from bench.dagster_env import DagsterEnv
from ml_assets.sensors.loop_reading import run_days

RUN_STATS = """
import json, sys
import dagster as dg
import mlflow

backfill_id, tracking_uri = sys.argv[1], sys.argv[2]
instance = dg.DagsterInstance.get()
kinds = {
    dg.DagsterEventType.RUN_ENQUEUED: "enqueued",
    dg.DagsterEventType.RUN_STARTING: "starting",
    dg.DagsterEventType.RUN_START: "started",
}
runs = []
filters = [
    ("backfill", dg.RunsFilter(tags={"dagster/backfill": backfill_id})),
    ("promotion", dg.RunsFilter(job_name="promotion_job")),
]
for kind, run_filter in filters:
    for record in instance.get_run_records(filters=run_filter):
        run = record.dagster_run
        events = {}
        for entry in instance.all_logs(run.run_id, of_type=set(kinds)):
            events.setdefault(kinds[entry.dagster_event.event_type], entry.timestamp)
        stats = instance.get_run_step_stats(run.run_id)
        steps = {stat.step_key: [stat.start_time, stat.end_time] for stat in stats}
        failed_steps = sorted(
            stat.step_key for stat in stats if stat.status.value == "FAILURE"
        )
        runs.append({
            "kind": kind, "run_id": run.run_id, "status": run.status.value,
            "partition_tags": {
                key: value for key, value in run.tags.items()
                if key == "dagster/partition" or key.startswith("dagster/asset_partition_range")
            },
            "created": record.create_timestamp.timestamp(),
            "start": record.start_time, "end": record.end_time, "events": events, "steps": steps,
            "failed_steps": failed_steps,
        })
mlflow.set_tracking_uri(tracking_uri)
mlflow_runs = {}
for found in mlflow.search_runs(experiment_names=["ml_assets"], output_format="list"):
    tags = found.data.tags
    if tags.get("dagster_asset") in ("duration_model", "model_evaluation"):
        key = tags["dagster_asset"] + " " + tags.get("dagster_partition", "")
        mlflow_runs[key] = [found.info.start_time / 1000, (found.info.end_time or 0) / 1000]
print(json.dumps({"runs": runs, "mlflow_runs": mlflow_runs}))
"""
"""Run in a child with the instance's environment: every run of the backfill and every promotion
run, with their records, events and step stats, and the MLflow runs of the steps (start, end)."""


def run_stats(env: DagsterEnv, backfill_id: str) -> dict[str, Any]:
    tracking_uri = f"sqlite:///{env.data_dir / 'mlflow.db'}"
    found = env.run([sys.executable, "-c", RUN_STATS, backfill_id, tracking_uri])
    return json.loads(found.check("reading the runs from the instance").stdout)


TRAIN = "train (duration_model steps outside their MLflow runs)"
MLFLOW = "MLflow log + register (the days' MLflow runs in duration_model steps)"
PROMOTE = "promote (challenger_validation, its promotion_gate checks, model_promotion)"
PROMOTION_STEPS = ("challenger_validation", "promotion_gate", "model_promotion")


def days_of(run: dict[str, Any]) -> list[str]:
    """The days a run materialized: its partition, or every day of its partition range."""
    return [day.isoformat() for day in run_days(run["partition_tags"])]


def attribute(stats: dict[str, Any], launched: float, finished: float) -> dict[str, float]:
    """Seconds of the Dagster side by where they went, summed over the whole backfill."""
    spent: dict[str, float] = defaultdict(float)
    intervals = []
    mlflow_runs = stats["mlflow_runs"]
    for run in stats["runs"]:
        if not run["end"] or any(end is None for _, end in run["steps"].values()):
            continue  # not finished (a run the case gave up waiting for)
        events = run["events"]
        queued_at = events.get("enqueued", run["created"])
        started_at = events.get("started", run["start"])
        # The queue's daemon records no dequeue event: a run leaves the queue when it is launched.
        launched_at = events.get("starting", started_at)
        spent["run queue (enqueued until launched: pool, limits, dequeue ticks)"] += (
            launched_at - queued_at
        )
        spent["run process start, imports, code load, run plan"] += started_at - launched_at
        step_total = 0.0
        for step, (step_start, step_end) in run["steps"].items():
            seconds = step_end - step_start
            step_total += seconds
            asset = step.split(".")[0]
            if asset == "duration_model":
                # Each day of a training run logs in an MLflow run of its own.
                logged = [mlflow_runs.get(f"duration_model {day}") for day in days_of(run)]
                logging = sum(end - start for start, end in filter(None, logged) if end)
                spent[TRAIN] += seconds - logging
                spent[MLFLOW] += logging
            elif asset == "model_evaluation":
                spent["evaluate (model_evaluation step)"] += seconds
            elif asset == "trip_duration_predictions":
                spent["predict (trip_duration_predictions step)"] += seconds
            elif asset in PROMOTION_STEPS:
                spent[PROMOTE] += seconds
            else:
                spent[f"other steps ({asset})"] += seconds
        spent["in-run bookkeeping (run time outside steps)"] += run["end"] - started_at - step_total
        intervals.append((queued_at, run["end"]))
    # Time when no run of the backfill or its promotions was queued or running: waiting for the
    # backfill daemon (every 30 s) or the sensor daemon to look again.
    covered, reach = 0.0, launched
    for begin, end in sorted(intervals):
        begin, end = max(begin, reach), min(end, finished)
        if end > begin:
            covered += end - begin
            reach = end
    spent["no run queued or running (daemon ticks)"] = (finished - launched) - covered
    return dict(spent)


def median_run_start(stats: dict[str, Any]) -> float | None:
    """The median seconds from a run's launch to its start (process, imports, code, plan)."""
    starts = [
        run["events"]["started"] - run["events"]["starting"]
        for run in stats["runs"]
        if {"started", "starting"} <= run["events"].keys()
    ]
    return statistics.median(starts) if starts else None
