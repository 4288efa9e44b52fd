"""Case `models`: the walk-forward model backfill a user launches from the UI, against a script.

Dagster: a running `dagster dev` (webserver, daemon, run queue; `ML_ASSETS_EXECUTOR=in_process`,
the `.env` default) is asked over GraphQL, as the UI's Materialize button asks it
(`launchPartitionBackfill`), to backfill the model group and the predictions (`duration_model`,
`model_evaluation`, `challenger_validation`, `model_promotion`, `trip_duration_predictions`) over
N days (30 by default: 2021-01-29..2021-02-27, each model trained on 28 days of the real January
and February 2021 files). The backfill daemon turns it into runs, the run queue starts them: the
models in one run, then one run per day that scores it, decides it behind the
promotion gate and predicts it. A run whose gate says no fails there (as `promotion_job` does);
its day is decided. Timed from the launch request until the backfill completed.

Script: `bench/models_script.py` does the same work day by day in one process: the fits, the same
MLflow logging and registry calls, the evaluation of the challenger against the champion, the
promotion gate and decision, the predictions.

Set up beforehand, not timed: the zone lookup, `raw_trips` and `trip_features` of every day the
windows read (one range run), and the model of the day before the first day (each side its own,
in its own MLflow store), which the first day's evaluation scores.

Where the time goes is read back from the instance (run records, run events and step stats) and
the MLflow store (when each step's MLflow run started), and from the script's own timings. The CPU
time `dagster dev`'s processes spent on the backfill (its runs, daemon, webserver and code server)
is read from /proc before and after it (`bench.process_cpu`): divided by the machine's cores, it is
a floor under the backfill's wall time that no scheduling can beat.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections import defaultdict
from datetime import date, timedelta
from typing import Any

from bench.dagster_dev_client import BACKFILL_DONE, DagsterDev, running_dagster_dev
from bench.dagster_env import DagsterEnv, prepare_days, serve_directory
from bench.harness import REPO_ROOT, BenchContext, CaseResult, Goal, ratio
from bench.process_cpu import RUN_PROCESSES, descendants_cpu, spent_between
from bench.run_timings import (
    MLFLOW,
    PROMOTE,
    TRAIN,
    attribute,
    days_of,
    median_run_start,
    run_stats,
)
from bench.tlc_files import tlc_files

GOAL_RATIO = 1.5
ASSETS = (
    "duration_model",
    "model_evaluation",
    "challenger_validation",
    "model_promotion",
    "trip_duration_predictions",
)
DEFAULT_DAYS = 30
TINY_DAYS = 2
FIRST_DAY = date(2021, 1, 29)
WINDOW_DAYS = 28
TINY_FIRST_DAY = date(2021, 1, 5)
TINY_WINDOW_DAYS = 3
TIMEOUT_SECONDS = 3600

GATE_STEP = "promotion_gate"
"""The step of the promotion gate's blocking checks: a run that fails only there decided "no"."""


def _days(first: date, count: int) -> list[date]:
    return [first + timedelta(days=offset) for offset in range(count)]


def _wait_for_backfill(
    dev: DagsterDev, env: DagsterEnv, backfill_id: str, started: float
) -> tuple[float, dict[str, Any]]:
    """Seconds from `started` (a `time.time()`) until the backfill completed, and the runs'
    stats. Runs whose only failed step is the promotion gate are decisions (the challenger stays
    out), not failures; any other failure, or a `promotion_job` run (the backfill's own runs
    decide its days), is an error."""
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while (answer := dev.api.backfill(backfill_id)).get("status") not in BACKFILL_DONE:
        if time.monotonic() > deadline:
            raise RuntimeError(f"backfill {backfill_id} did not complete: {answer}")
        time.sleep(0.5)
    seconds = time.time() - started
    stats = run_stats(env, backfill_id)
    failed = [
        f"{run['run_id']} ({run['status']}, failed steps: {run['failed_steps']})"
        for run in stats["runs"]
        if run["kind"] == "backfill"
        and run["status"] != "SUCCESS"
        and run["failed_steps"] != [GATE_STEP]
    ]
    if failed:
        raise RuntimeError(f"backfill {backfill_id} ended {answer['status']}: " + "; ".join(failed))
    if promotions := [run["run_id"] for run in stats["runs"] if run["kind"] == "promotion"]:
        raise RuntimeError(
            f"the backfill decides its days in its own runs, yet promotion_job ran: {promotions}"
        )
    return seconds, stats


def _script_phases(stdout: str) -> tuple[list[dict[str, Any]], float]:
    days = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    work = next(
        float(line.split("=", 1)[1])
        for line in stdout.splitlines()
        if line.startswith("work_seconds=")
    )
    return days, work


def run(context: BenchContext) -> CaseResult:
    measured = measure(context)
    (context.work_dir / "models" / "measured.json").write_text(json.dumps(measured))
    return result_from(measured)


def measure(context: BenchContext) -> dict[str, Any]:
    """Set up, run the script, then the backfill on `dagster dev`; everything measured, raw."""
    tiny = context.tiny
    count = context.days or (TINY_DAYS if tiny else DEFAULT_DAYS)
    first = TINY_FIRST_DAY if tiny else FIRST_DAY
    window = TINY_WINDOW_DAYS if tiny else WINDOW_DAYS
    last = _days(first, count)[-1]
    setup_day = first - timedelta(days=1)
    root = context.work_dir / "models"
    months = ["2021-01"] if tiny else ["2021-01", "2021-02"]
    server = contextlib.nullcontext(None) if tiny else serve_directory(tlc_files(context, months))
    load = os.getloadavg()
    with server as url:
        env = DagsterEnv.create(root / "dagster", tiny=tiny, tlc_url=url)
        env.variables.update(
            {"ML_ASSETS_EXECUTOR": "in_process", "ML_ASSETS_TRAINING_WINDOW_DAYS": str(window)}
        )
        prepare_days(env, [], ["taxi_zones"])
        env.materialize(
            "raw_trips,trip_features", partition_range=f"{first - timedelta(days=window)}...{last}"
        ).check("setting up raw_trips and trip_features")
        prepare_days(env, [str(setup_day)], ["duration_model"])

        script_dir = root / "script"
        script = [sys.executable, str(REPO_ROOT / "bench" / "models_script.py"), str(env.data_dir)]
        window_option = ["--window-days", str(window)]
        setup_only = [str(setup_day), str(setup_day), "--train-only"]
        env.run([*script, str(script_dir), *setup_only, *window_option]).check(
            "the script's model of the day before the first"
        )
        scripted = env.run([*script, str(script_dir), str(first), str(last), *window_option]).check(
            "the models script"
        )
        middle_load = os.getloadavg()
        with running_dagster_dev(
            "ml_assets.definitions", cwd=env.root, env=env.variables, log=root / "dagster-dev.log"
        ) as dev:
            cpu_before = descendants_cpu()
            launched = time.time()
            backfill_id = dev.api.launch_backfill(
                {name: (str(first), str(last)) for name in ASSETS}
            )
            backfill_seconds, stats = _wait_for_backfill(dev, env, backfill_id, launched)
            cpu_after = descendants_cpu()
    return {
        "tiny": tiny,
        "days": count,
        "first": str(first),
        "last": str(last),
        "window": window,
        "script_seconds": scripted.seconds,
        "script_cpu_seconds": scripted.cpu_seconds,
        # CPU seconds of dagster dev's processes during the backfill, by role (None: no /proc).
        "cpu": spent_between(cpu_before, cpu_after) if cpu_before and cpu_after else None,
        "cpus": os.cpu_count(),
        "script_stdout": scripted.stdout,
        "launched": launched,
        "backfill_seconds": backfill_seconds,
        "stats": stats,
        "served": _served_versions(env, first, last),
        "loads": [load, middle_load, os.getloadavg()],
    }


def result_from(measured: dict[str, Any]) -> CaseResult:
    """The case's table, goals and notes from what `measure` recorded."""
    count, window, stats = measured["days"], measured["window"], measured["stats"]
    result = CaseResult(
        case="models",
        title=f"walk-forward model backfill, {count} days ({measured['first']}.."
        f"{measured['last']}), "
        + (
            "tiny: synthetic sample source"
            if measured["tiny"]
            else f"{window}-day windows, real TLC files"
        ),
        compared="a backfill of the model group and the predictions (`duration_model`, "
        "`model_evaluation`, `challenger_validation`, `model_promotion`, "
        "`trip_duration_predictions`) launched on a running `dagster dev` over GraphQL as the UI "
        "launches it (`launchPartitionBackfill`: backfill daemon, run queue; each day scored, "
        "decided behind the promotion gate and predicted in one run; "
        "`ML_ASSETS_EXECUTOR=in_process`; the instance of `deploy/dagster.yaml`), and "
        "`bench/models_script.py` doing the same fits, MLflow logging, registry calls, "
        "evaluations, promotions and predictions day by day in one process. Rows: seconds per "
        "day by where they went (Dagster's read back from the instance's run events and step "
        "stats and from when each step's MLflow run started)",
        columns=["where", "script s/day", "Dagster s/day", "Dagster - script s/day"],
    )
    script_days, script_work = _script_phases(measured["script_stdout"])
    script_total = measured["script_seconds"]
    backfill_seconds = measured["backfill_seconds"]
    spent = attribute(stats, measured["launched"], measured["launched"] + backfill_seconds)
    script_phase: dict[str, float] = defaultdict(float)
    for day in script_days:
        for phase, seconds in day["day_seconds"].items():
            script_phase[phase] += seconds
    script_rows = {
        "run process start, imports, code load, run plan": script_total - script_work,
        TRAIN: script_phase["read"] + script_phase["train"],
        MLFLOW: script_phase["mlflow"],
        "evaluate (model_evaluation step)": script_phase["evaluate"],
        PROMOTE: script_phase["promote"],
        "predict (trip_duration_predictions step)": script_phase["predict"],
    }
    rows = [
        ("total, until the backfill completed", script_total, backfill_seconds),
        *(
            (where, script_rows.get(where, 0.0), spent.get(where, 0.0))
            for where in dict.fromkeys([*script_rows, *spent])
        ),
    ]
    for where, script_s, dagster_s in rows:
        result.rows.append(
            {
                "where": where,
                "script s/day": script_s / count,
                "Dagster s/day": dagster_s / count,
                "Dagster - script s/day": (dagster_s - script_s) / count,
            }
        )

    backfill_runs = [run for run in stats["runs"] if run["kind"] == "backfill"]
    training_runs = [
        run
        for run in backfill_runs
        if any(step.startswith("duration_model") for step in run["steps"])
    ]
    gate_said_no = [run for run in backfill_runs if run["failed_steps"] == [GATE_STEP]]
    total_ratio = ratio(backfill_seconds, script_total)
    result.goals.append(
        Goal(
            f"the backfill, its promotions done, within {GOAL_RATIO}x the plain script",
            f"{backfill_seconds:.0f} s vs {script_total:.0f} s ({total_ratio:.2f}x)",
            total_ratio <= GOAL_RATIO,
        )
    )
    result.goals.append(_same_walk_forward(measured["served"], script_days))
    cpu_note = _cpu(result, measured, len(backfill_runs))
    loads = measured["loads"]
    result.notes += [
        f"{len(backfill_runs)} backfill runs, {len(gate_said_no)} of them failed by a promotion "
        "gate that said no (a decision: the challenger stays out); the script "
        f"{script_total:.1f} s end to end, {script_work:.1f} s after its imports",
        f"the backfill daemon requested {len(training_runs)} `duration_model` run(s) "
        f"(days each: {', '.join(str(len(days_of(run))) for run in training_runs)}; its "
        "backfill policy), which the run queue starts one at a time (the `training` pool's "
        "limit of 1); a day's `model_evaluation`, `challenger_validation` (its gate waits for the "
        "decision of the day before), `model_promotion` and `trip_duration_predictions` share a "
        "run, requested at the daemon's first look (every 30 s, fixed in Dagster 1.13) after the "
        "model of the day before exists",
        "Dagster's rows are summed over its runs, which overlap (scoring runs run beside the "
        "training runs), so they add up to more than its total; a run's process started, "
        "imported Dagster, loaded the code location and planned the run in "
        f"{median_run_start(stats) or 0:.1f} s (median), before its first step imported MLflow "
        "and scikit-learn and opened the MLflow store again",
        *([cpu_note] if cpu_note else []),
        "one measurement of each side (a 30-day backfill takes many minutes): read the ratio",
        "load average (1, 5, 15 min) before the script, before the backfill and after it: "
        + ", ".join(" / ".join(f"{value:.1f}" for value in load) for load in loads)
        + f" on {os.cpu_count()} CPUs",
    ]
    return result


def _cpu(result: CaseResult, measured: dict[str, Any], runs: int) -> str | None:
    """Rows of the CPU time both sides spent, and a note on the floor it puts under the
    backfill's wall time; None (no rows) where it was not measured."""
    spent = measured.get("cpu")
    if not spent:
        return None
    count, cpus = measured["days"], measured["cpus"]
    total, script_cpu = sum(spent.values()), measured["script_cpu_seconds"]
    run_cpu = spent.get(RUN_PROCESSES, 0.0)
    for where, script_s, dagster_s in (
        (
            "CPU time, all processes (Dagster: dagster dev's, during the backfill)",
            script_cpu,
            total,
        ),
        ("CPU time of the run processes", 0.0, run_cpu),
    ):
        result.rows.append(
            {
                "where": where,
                "script s/day": script_s / count,
                "Dagster s/day": dagster_s / count,
                "Dagster - script s/day": (dagster_s - script_s) / count,
            }
        )
    others = ", ".join(
        f"{seconds:.0f} s {role}"
        for role, seconds in sorted(spent.items(), key=lambda item: -item[1])
        if role != RUN_PROCESSES and seconds >= 0.5
    )
    floor = total / cpus
    return (
        f"CPU time: dagster dev's processes spent {total:.0f} s on the backfill, {run_cpu:.0f} s of "
        f"it in its {runs} run processes ({run_cpu / runs:.1f} s each on average; {others}), "
        f"against the script's {script_cpu:.0f} s; on {cpus} CPUs that alone takes at least "
        f"{floor:.0f} s, {ratio(floor, measured['script_seconds']):.2f}x the script's wall time"
    )


def _served_versions(env: DagsterEnv, first: date, last: date) -> dict[str, str]:
    """The model version that predicted each day on the Dagster side."""
    import polars as pl

    served = {}
    for day in _days(first, (last - first).days + 1):
        path = env.data_dir / "assets" / "trip_duration_predictions" / f"{day}.parquet"
        if path.exists():
            served[str(day)] = str(pl.read_parquet(path, columns=["model_version"])[0, 0])
    return served


def _same_walk_forward(served: dict[str, str], script_days: list[dict[str, Any]]) -> Goal:
    """Both sides served each day with the same model version (the champion going into it)."""
    differ = [
        f"{day['day']}: script v{day['serving_version']}, Dagster v{served.get(day['day'], '?')}"
        for day in script_days
        if served.get(day["day"]) != str(day["serving_version"])
    ]
    return Goal(
        "each day predicted by the same model version as the script (the walk-forward order: "
        "the champion decided before the day)",
        f"{len(script_days) - len(differ)} of {len(script_days)} days the same"
        + (f"; differ: {'; '.join(differ[:6])}" if differ else ""),
        not differ,
    )
