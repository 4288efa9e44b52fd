"""Case `backfill`: 90 days of `raw_trips` and `trip_features` (2021-01-01..2021-03-31).

Compared, each in fresh processes as users run them:
- one Dagster run over the whole range (`dagster asset materialize --partition-range`, the
  single-run backfill policy of both assets);
- one Dagster run per partition (what a backfill without that policy launches): a few days are
  run and the median is multiplied by the number of days, since 90 runs take too long to measure;
- a plain polars script doing the same work (`bench/backfill_script.py`);
- the same single run again over unchanged inputs.

Set up beforehand, not measured: the zone lookup and the month files downloaded into the
project's cache (from a loopback HTTP server serving the TLC files).
"""

from __future__ import annotations

import contextlib
import statistics
import sys
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from bench.dagster_env import IN_PROCESS_CONFIG, DagsterEnv, prepare_days, serve_directory
from bench.harness import REPO_ROOT, BenchContext, CaseResult, ChildRun, Goal, ratio
from bench.tlc_files import tlc_files
from ml_assets.lib.tlc_client import TLCClient

ASSETS = "raw_trips,trip_features"
GOAL_SINGLE_VS_SCRIPT = 2.0
GOAL_PER_PARTITION_VS_SINGLE = 20.0
GOAL_RERUN_SHARE = 0.10


def _failure(run: ChildRun) -> str:
    lines = [line for line in run.stderr.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else f"exit code {run.returncode}"


def _fresh_env(context: BenchContext, name: str, url: str | None, months: list[date]) -> DagsterEnv:
    env = DagsterEnv.create(context.work_dir / "backfill" / name, tiny=context.tiny, tlc_url=url)
    prepare_days(env, [], ["taxi_zones"])
    if url is not None:
        client = TLCClient(env.data_dir / "cache", base_url=url)
        for month in months:
            client.fetch_month("green", month)
    return env


def _feature_rows(folder: Path) -> int:
    files = sorted(folder.glob("*.parquet"))
    return pl.scan_parquet(files).select(pl.len()).collect().item() if files else 0


def run(context: BenchContext) -> CaseResult:
    first = date(2021, 1, 1)
    last = date(2021, 1, 3) if context.tiny else date(2021, 3, 31)
    day_count = (last - first).days + 1
    sample_days = (
        [first + timedelta(days=1)]
        if context.tiny
        else [first + timedelta(days=offset) for offset in (3, 40, 75)]
    )
    months = sorted({first.replace(day=1), last.replace(day=1)} | {date(2021, 2, 1)})
    months = [month for month in months if month <= last]
    result = CaseResult(
        case="backfill",
        title=f"backfill of {day_count} days of {ASSETS} ({first}..{last}), "
        + ("tiny: synthetic sample source" if context.tiny else "real TLC files"),
        compared="a single Dagster run over the range, one Dagster run per partition "
        f"(extrapolated from {len(sample_days)}), a plain polars script, and the single run "
        "repeated over unchanged inputs; every Dagster run through the dagster CLI with the "
        "in-process executor (run config `execution: {config: {in_process: {}}}`)",
        columns=["how", "median s", "runs s", "vs script", "feature rows"],
    )
    server = (
        contextlib.nullcontext(None)
        if context.tiny
        else serve_directory(tlc_files(context, [f"{month:%Y-%m}" for month in months]))
    )
    times: dict[str, list[float]] = {
        "single run": [],
        "plain polars script": [],
        "single run again, inputs unchanged": [],
    }
    rows: dict[str, int] = {}
    failures: dict[str, str] = {}
    per_partition: list[float] = []
    partition_range = f"{first}...{last}"
    with server as url:
        for attempt in range(context.repeat):
            env = _fresh_env(context, f"single_{attempt}", url, months)
            first_run = env.materialize(
                ASSETS, partition_range=partition_range, extra=IN_PROCESS_CONFIG
            )
            if first_run.returncode != 0:
                failures["single run"] = _failure(first_run)
                break
            times["single run"].append(first_run.seconds)
            rows["single run"] = _feature_rows(env.data_dir / "assets" / "trip_features")
            again = env.materialize(
                ASSETS, partition_range=partition_range, extra=IN_PROCESS_CONFIG
            )
            if again.returncode != 0:
                failures["single run again, inputs unchanged"] = _failure(again)
            else:
                times["single run again, inputs unchanged"].append(again.seconds)

            output = context.work_dir / "backfill" / f"script_{attempt}"
            script = env.run(
                [
                    sys.executable,
                    str(REPO_ROOT / "bench" / "backfill_script.py"),
                    str(env.data_dir / "cache"),
                    str(env.data_dir / "assets" / "taxi_zones.parquet"),
                    str(output),
                    first.isoformat(),
                    last.isoformat(),
                    *(["--sample"] if context.tiny else []),
                ]
            ).check("the plain polars backfill script")
            times["plain polars script"].append(script.seconds)
            rows["plain polars script"] = _feature_rows(output / "trip_features")

        env = _fresh_env(context, "per_partition", url, months)
        for day in sample_days:
            one = env.materialize(ASSETS, partition=day.isoformat(), extra=IN_PROCESS_CONFIG)
            if one.returncode != 0:
                failures["one run per partition"] = _failure(one)
                break
            per_partition.append(one.seconds)

    medians = {name: statistics.median(values) for name, values in times.items() if values}
    script = medians.get("plain polars script", 0.0)
    for name in ("single run", "plain polars script", "single run again, inputs unchanged"):
        result.rows.append(
            {
                "how": name,
                "median s": medians.get(name),
                "runs s": " / ".join(f"{value:.1f}" for value in times[name])
                or f"FAILED: {failures.get(name, '')}",
                "vs script": ratio(medians[name], script) if name in medians else None,
                "feature rows": rows.get(name),
            }
        )
    per_run = statistics.median(per_partition) if per_partition else None
    extrapolated = per_run * day_count if per_run is not None else None
    result.rows.append(
        {
            "how": f"one run per partition ({day_count} x median of {len(per_partition)} runs)",
            "median s": extrapolated,
            "runs s": " / ".join(f"{value:.1f}" for value in per_partition)
            or f"FAILED: {failures.get('one run per partition', '')}",
            "vs script": ratio(extrapolated, script) if extrapolated is not None else None,
        }
    )

    single = medians.get("single run")
    rerun = medians.get("single run again, inputs unchanged")
    result.goals.append(
        Goal(
            f"single run within {GOAL_SINGLE_VS_SCRIPT:.0f}x the plain script",
            f"{ratio(single, script):.2f}x"
            if single
            else f"no single run: {failures.get('single run')}",
            single is not None and ratio(single, script) <= GOAL_SINGLE_VS_SCRIPT,
        )
    )
    result.goals.append(
        Goal(
            f"single run at least {GOAL_PER_PARTITION_VS_SINGLE:.0f}x faster than one run per "
            "partition",
            f"{ratio(extrapolated, single):.1f}x" if single and extrapolated else "not measured",
            bool(single and extrapolated)
            and ratio(extrapolated, single) >= GOAL_PER_PARTITION_VS_SINGLE,
        )
    )
    result.goals.append(
        Goal(
            f"a re-run over unchanged inputs under {GOAL_RERUN_SHARE:.0%} of the first run",
            f"{ratio(rerun, single):.0%}" if single and rerun else "not measured",
            bool(single and rerun) and ratio(rerun, single) < GOAL_RERUN_SHARE,
        )
    )
    if rows.get("single run") != rows.get("plain polars script"):
        result.notes.append(
            f"feature rows differ: Dagster {rows.get('single run')}, script "
            f"{rows.get('plain polars script')}"
        )
    result.notes.append(
        "the in-process executor runs every step, asset checks included, in the run's process; "
        "with the default multiprocess executor each step starts a process that imports the "
        "code location again (see the daily case)"
    )
    result.notes.append(
        f"one run per partition is extrapolated: {len(per_partition)} single-day runs were "
        f"measured and their median multiplied by {day_count}"
    )
    return result
