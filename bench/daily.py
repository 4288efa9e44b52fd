"""Case `daily`: scoring one day the way users run it (the `dagster` CLI) against a plain script.

Both do the same work for 2021-02-10: read the day's trips (from the month file the project
cached), build features, load the serving model from MLflow, predict and write parquet. Set up
beforehand, not measured: the zone lookup, 29 days of `raw_trips`/`trip_features`, the model
trained through 2021-02-09 (registered in MLflow) and the day's `model_evaluation`, which names the
serving model.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
from datetime import date, timedelta

import polars as pl

from bench.dagster_env import IN_PROCESS_CONFIG, DagsterEnv, prepare_days, serve_directory
from bench.harness import REPO_ROOT, BenchContext, CaseResult, ChildRun, Goal, ratio
from bench.tlc_files import tlc_files

GOAL_RATIO = 1.5
SCORED_ASSETS = "raw_trips,trip_features,trip_duration_predictions"


def _days(last: date, count: int) -> list[str]:
    return [(last - timedelta(days=offset)).isoformat() for offset in reversed(range(count))]


def run(context: BenchContext) -> CaseResult:
    day = date(2021, 1, 3) if context.tiny else date(2021, 2, 10)
    window = 3 if context.tiny else 29
    result = CaseResult(
        case="daily",
        title=f"scoring one day ({day}), "
        + ("tiny: synthetic sample source" if context.tiny else "real TLC files"),
        compared=f"`dagster asset materialize --select {SCORED_ASSETS} --partition {day}` "
        "(the default multiprocess executor, and the in-process executor) and "
        "`python bench/daily_script.py` doing the same work; each a fresh process, as users run it",
        columns=["how", "median s", "runs s", "vs script"],
    )
    server = (
        contextlib.nullcontext(None)
        if context.tiny
        else serve_directory(tlc_files(context, ["2021-01", "2021-02"]))
    )
    with server as url:
        env = DagsterEnv.create(context.work_dir / "daily", tiny=context.tiny, tlc_url=url)
        days = _days(day, window)
        prepare_days(env, days, ["taxi_zones", "raw_trips", "trip_features"])
        prepare_days(env, [days[-2]], ["duration_model"])
        prepare_days(env, [days[-1]], ["model_evaluation"])

        script_output = context.work_dir / "daily" / "script_predictions.parquet"
        script_args = [
            sys.executable,
            str(REPO_ROOT / "bench" / "daily_script.py"),
            str(env.data_dir),
            day.isoformat(),
            str(script_output),
            *(["--sample"] if context.tiny else []),
        ]
        runs = {
            "dagster CLI, default executor": lambda: env.materialize(
                SCORED_ASSETS, partition=day.isoformat()
            ),
            "dagster CLI, in-process executor": lambda: env.materialize(
                SCORED_ASSETS, partition=day.isoformat(), extra=IN_PROCESS_CONFIG
            ),
            "plain script": lambda: env.run(script_args),
            "only `import ml_assets.definitions`": lambda: env.python(
                "import ml_assets.definitions"
            ),
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(context.repeat):
            for name, start in runs.items():
                finished: ChildRun = start().check(name)
                times[name].append(finished.seconds)

    medians = {name: statistics.median(values) for name, values in times.items()}
    script = medians["plain script"]
    for name, values in times.items():
        result.rows.append(
            {
                "how": name,
                "median s": medians[name],
                "runs s": " / ".join(f"{value:.1f}" for value in values),
                "vs script": ratio(medians[name], script),
            }
        )
    dagster_predictions = pl.read_parquet(
        env.data_dir / "assets" / "trip_duration_predictions" / f"{day}.parquet"
    )
    script_predictions = pl.read_parquet(script_output)
    same = dagster_predictions.equals(script_predictions)
    default_ratio = ratio(medians["dagster CLI, default executor"], script)
    in_process_ratio = ratio(medians["dagster CLI, in-process executor"], script)
    result.goals += [
        Goal(
            f"the CLI run at most {GOAL_RATIO}x the plain script",
            f"{default_ratio:.2f}x with the default executor, {in_process_ratio:.2f}x in-process",
            default_ratio <= GOAL_RATIO,
        ),
        Goal(
            "both write the same predictions",
            f"{dagster_predictions.height} rows, "
            + ("identical" if same else "DIFFERENT: see the two parquet files"),
            same,
        ),
    ]
    result.notes.append(
        "fixed costs dominate a day of green trips (a few thousand rows): starting Python, importing "
        "dagster and loading the code location, opening the instance and planning the run (and "
        "with the default executor, loading the code location again in every step's process); "
        "MLflow is imported by the prediction step, as the script imports it"
    )
    return result
