"""Case `peers`: ml_assets against Prefect 3 on the same work, side by side in one run.

Two pieces of work, each done four ways and by a plain script:
- scoring one day (the `daily` case's work, 2021-02-10: the day's trips from the cached month
  file, features, the serving model from MLflow, predictions written as parquet);
- the 90-day ingestion backfill (the `backfill` case's work: raw trips and features of every day
  of 2021-01-01..2021-03-31 from the real month files), a first run and a re-run over unchanged
  inputs (which both orchestrators' caches should turn into no work).

ml_assets runs through the `dagster` CLI with the in-process executor, as the other cases do, and
through a running `dagster dev`, launched over its GraphQL API as the UI launches it (`launchRun`
for the day and for one run over the range, `launchPartitionBackfill` for the backfill the daemon
and the run queue start), with `ML_ASSETS_EXECUTOR=in_process`. Prefect runs the flows of
`bench/peers_prefect/` (tasks with retries, `INPUTS + TASK_SOURCE` caching, persisted results) in
its own environment (`bench/prefect_env.py`), in its default ephemeral mode and against a running
`prefect server` on loopback. Everything is timed end to end: from starting the process (or
sending the launch request) to its end.

Every first run starts cold on both sides: the Dagster side's day (or range) files are deleted
before it, so its partition cache cannot skip them; every Prefect first run gets an empty result
storage. The measurements without servers are interleaved repeat by repeat; those against
`prefect server` and `dagster dev` run while that server is up, one server at a time, so neither
server's idle work weighs on the others.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import statistics
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from bench.dagster_dev_client import running_dagster_dev
from bench.dagster_env import IN_PROCESS_CONFIG, DagsterEnv, prepare_days, serve_directory
from bench.harness import REPO_ROOT, BenchContext, CaseResult, ChildRun, Goal, ratio, run_child
from bench.prefect_env import PREFECT_VERSION, PrefectEnv, running_prefect_server
from bench.tlc_files import tlc_files
from ml_assets.lib.tlc_client import TLCClient

SCORED_ASSETS = ("raw_trips", "trip_features", "trip_duration_predictions")
INGESTED_ASSETS = ("raw_trips", "trip_features")
FLOWS = REPO_ROOT / "bench" / "peers_prefect"

SCRIPT = "plain script"
CLI = "ml_assets: dagster CLI, in-process"
DEV = "ml_assets: dagster dev, launchRun"
DEV_BACKFILL = "ml_assets: dagster dev, launchPartitionBackfill (daemon, run queue)"
EPHEMERAL = f"Prefect {PREFECT_VERSION}: ephemeral (default)"
SERVER = f"Prefect {PREFECT_VERSION}: prefect server on loopback"
PREFECT_WAYS = (EPHEMERAL, SERVER)


@dataclass
class _Times:
    """Wall times of one way of running one piece of work, and a note on what it produced."""

    seconds: list[float] = field(default_factory=list)
    produced: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None


@dataclass
class _Work:
    """One piece of work (`day`, `backfill`, `re-run`): its times by way of running it."""

    label: str
    times: dict[str, _Times] = field(default_factory=dict)

    def add(self, way: str, seconds: float, produced: str = "") -> None:
        times = self.times.setdefault(way, _Times())
        times.seconds.append(seconds)
        times.produced = produced or times.produced

    def median(self, way: str) -> float | None:
        return self.times[way].median if way in self.times else None


def _summary(run: ChildRun, what: str) -> str:
    """`rows=N cached=N` from a flow's output (checked for a clean exit first)."""
    run.check(what)
    found = re.search(r"rows=(\d+) cached=(\d+)", run.stdout)
    if found is None:
        raise RuntimeError(f"{what} printed no summary: {run.stdout[-500:]}")
    return f"{int(found.group(1)):,} rows, {found.group(2)} task runs cached"


def _trip_keys(files: list[Path]) -> set[str]:
    if not files:
        return set()
    return set(pl.scan_parquet(files).select("trip_key").collect()["trip_key"].to_list())


def _clear(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


@dataclass
class _Setup:
    """What the case works in: the Dagster instance and data, Prefect's environment, the days."""

    context: BenchContext
    env: DagsterEnv
    prefect: PrefectEnv
    day: date
    first: date
    last: date

    @property
    def root(self) -> Path:
        return self.context.work_dir / "peers"

    @property
    def sample(self) -> list[str]:
        return ["--sample"] if self.context.tiny else []

    def dagster_day_files(self) -> list[Path]:
        return [
            self.env.data_dir / "assets" / name / f"{self.day}.parquet"
            for name in (*INGESTED_ASSETS, "trip_duration_predictions")
        ]

    def dagster_range_folders(self) -> list[Path]:
        return [self.env.data_dir / "assets" / name for name in INGESTED_ASSETS]

    def prefect_variables(self, mode: str, results: Path, api_url: str | None) -> dict[str, str]:
        variables = self.prefect.variables(self.root / "prefect" / mode, api_url)
        variables["PREFECT_LOCAL_STORAGE_PATH"] = str(results)
        return variables

    def prefect_day(self, variables: dict[str, str], output: Path) -> ChildRun:
        return run_child(
            [
                str(self.prefect.python),
                str(FLOWS / "daily_flow.py"),
                str(self.env.data_dir),
                self.day.isoformat(),
                str(output),
                *self.sample,
            ],
            env=variables,
            cwd=self.root,
        )

    def prefect_backfill(self, variables: dict[str, str], output: Path) -> ChildRun:
        return run_child(
            [
                str(self.prefect.python),
                str(FLOWS / "backfill_flow.py"),
                str(self.env.data_dir / "cache"),
                str(self.env.data_dir / "assets" / "taxi_zones.parquet"),
                str(output),
                self.first.isoformat(),
                self.last.isoformat(),
                *self.sample,
            ],
            env=variables,
            cwd=self.root,
        )


def _prepare(context: BenchContext, url: str | None, prefect: PrefectEnv) -> _Setup:
    day = date(2021, 1, 3) if context.tiny else date(2021, 2, 10)
    window = 3 if context.tiny else 29
    first = date(2021, 1, 1)
    last = date(2021, 1, 3) if context.tiny else date(2021, 3, 31)
    env = DagsterEnv.create(context.work_dir / "peers" / "dagster", tiny=context.tiny, tlc_url=url)
    days = [(day - timedelta(days=offset)).isoformat() for offset in reversed(range(window))]
    prepare_days(env, days, ["taxi_zones", "raw_trips", "trip_features"])
    prepare_days(env, [days[-2]], ["duration_model"])
    prepare_days(env, [days[-1]], ["model_evaluation"])
    if url is not None:
        # The month files of the backfill into the project's download cache (setup, not timed).
        client = TLCClient(env.data_dir / "cache", base_url=url)
        for month in (date(2021, 1, 1), date(2021, 2, 1), date(2021, 3, 1)):
            client.fetch_month("green", month)
    return _Setup(context, env, prefect, day, first, last)


def _measure_without_servers(setup: _Setup, day: _Work, backfill: _Work, rerun: _Work) -> None:
    root, env = setup.root, setup.env
    script_day = root / "script" / "predictions.parquet"
    # One flow run first, not timed: Prefect's first run creates its database and tables.
    warm = root / "prefect" / "results" / "ephemeral-warm-up"
    setup.prefect_day(
        setup.prefect_variables("ephemeral", warm, None), root / "prefect" / "warm.parquet"
    ).check("the Prefect daily flow, ephemeral (warm-up)")
    for attempt in range(setup.context.repeat):
        # Scoring the day.
        run = env.run(
            [
                sys.executable,
                str(REPO_ROOT / "bench" / "daily_script.py"),
                str(env.data_dir),
                setup.day.isoformat(),
                str(script_day),
                *setup.sample,
            ]
        ).check("the daily script")
        day.add(SCRIPT, run.seconds)
        _clear(setup.dagster_day_files())
        run = env.materialize(
            ",".join(SCORED_ASSETS), partition=setup.day.isoformat(), extra=IN_PROCESS_CONFIG
        ).check("dagster asset materialize (the day)")
        day.add(CLI, run.seconds)
        results = root / "prefect" / "results" / f"ephemeral-day-{attempt}"
        variables = setup.prefect_variables("ephemeral", results, None)
        run = setup.prefect_day(variables, root / "prefect" / "ephemeral" / "predictions.parquet")
        day.add(EPHEMERAL, run.seconds, _summary(run, "the Prefect daily flow (ephemeral)"))

        # The backfill, then the same again.
        output = root / "script" / "backfill"
        _clear([output])
        run = env.run(
            [
                sys.executable,
                str(REPO_ROOT / "bench" / "backfill_script.py"),
                str(env.data_dir / "cache"),
                str(env.data_dir / "assets" / "taxi_zones.parquet"),
                str(output),
                setup.first.isoformat(),
                setup.last.isoformat(),
                *setup.sample,
            ]
        ).check("the backfill script")
        backfill.add(SCRIPT, run.seconds)
        _clear(setup.dagster_range_folders())
        for work in (backfill, rerun):
            run = env.materialize(
                ",".join(INGESTED_ASSETS),
                partition_range=f"{setup.first}...{setup.last}",
                extra=IN_PROCESS_CONFIG,
            ).check(f"dagster asset materialize --partition-range ({work.label})")
            work.add(CLI, run.seconds)
        results = root / "prefect" / "results" / f"ephemeral-backfill-{attempt}"
        output = root / "prefect" / "ephemeral" / "backfill"
        _clear([results, output])
        variables = setup.prefect_variables("ephemeral", results, None)
        for work in (backfill, rerun):
            run = setup.prefect_backfill(variables, output)
            work.add(EPHEMERAL, run.seconds, _summary(run, f"the Prefect backfill ({work.label})"))


def _measure_prefect_server(
    setup: _Setup, day: _Work, backfill: _Work, rerun: _Work, notes: list[str]
) -> None:
    root = setup.root
    home = root / "prefect" / "server"
    home.mkdir(parents=True, exist_ok=True)
    server_variables = setup.prefect.variables(home)
    with running_prefect_server(setup.prefect, server_variables, root / "prefect-server.log") as (
        api_url,
        started,
    ):
        notes.append(
            f"`prefect server start` answered {started:.1f} s after it was started (not counted)"
        )
        # One flow run first, not timed: the server's first run creates its flow and tables.
        warm = root / "prefect" / "results" / "server-warm-up"
        setup.prefect_day(
            setup.prefect_variables("server", warm, api_url), root / "prefect" / "warm.parquet"
        ).check("the Prefect daily flow against the server (warm-up)")
        for attempt in range(setup.context.repeat):
            results = root / "prefect" / "results" / f"server-day-{attempt}"
            variables = setup.prefect_variables("server", results, api_url)
            run = setup.prefect_day(variables, root / "prefect" / "server" / "predictions.parquet")
            day.add(SERVER, run.seconds, _summary(run, "the Prefect daily flow (server)"))
            results = root / "prefect" / "results" / f"server-backfill-{attempt}"
            output = root / "prefect" / "server" / "backfill"
            _clear([results, output])
            variables = setup.prefect_variables("server", results, api_url)
            for work in (backfill, rerun):
                run = setup.prefect_backfill(variables, output)
                work.add(SERVER, run.seconds, _summary(run, f"the Prefect backfill ({work.label})"))


def _measure_dagster_dev(
    setup: _Setup, day: _Work, backfill: _Work, rerun: _Work, notes: list[str]
) -> None:
    variables = {**setup.env.variables, "ML_ASSETS_EXECUTOR": "in_process"}
    log = setup.root / "dagster-dev.log"
    with running_dagster_dev(
        "ml_assets.definitions", cwd=setup.env.root, env=variables, log=log
    ) as dev:
        notes.append(
            f"`dagster dev` served its code location {dev.started_seconds:.1f} s after it was "
            "started (not counted)"
        )
        first, last = setup.first.isoformat(), setup.last.isoformat()
        range_tags = {
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
        }
        for _ in range(setup.context.repeat):
            _clear(setup.dagster_day_files())
            day.add(DEV, dev.run(SCORED_ASSETS, {"dagster/partition": setup.day.isoformat()}))
            for way, launch in (
                (DEV, lambda: dev.run(INGESTED_ASSETS, range_tags)),
                (DEV_BACKFILL, lambda: dev.backfill(INGESTED_ASSETS, first, last)),
            ):
                _clear(setup.dagster_range_folders())
                backfill.add(way, launch())
                rerun.add(way, launch())


def _goals(works: list[_Work]) -> list[Goal]:
    goals = []
    for work in works:
        # Issue 16 pairs Prefect with the CLI and with a run launched through a running dagster
        # dev; the backfill through the daemon adds its fixed 30 s look and is shown, not paired.
        ours = {
            "the dagster CLI": work.median(CLI),
            "a run launched on dagster dev": work.median(DEV),
        }
        for prefect_way in PREFECT_WAYS:
            theirs = work.median(prefect_way)
            for our_way, our_seconds in ours.items():
                mode = "ephemeral" if prefect_way == EPHEMERAL else "with its server"
                measured = (
                    f"{our_seconds:.2f} s vs {theirs:.2f} s ({ratio(our_seconds, theirs):.2f}x)"
                    if our_seconds and theirs
                    else "not measured"
                )
                goals.append(
                    Goal(
                        f"{work.label}: ml_assets ({our_way}) faster than Prefect ({mode}), "
                        "end to end",
                        measured,
                        bool(our_seconds and theirs) and our_seconds < theirs,
                    )
                )
    return goals


def _same_rows(setup: _Setup) -> list[Goal]:
    """Both orchestrators and the script wrote the same trips: compared by their trip keys."""
    root, assets = setup.root, setup.env.data_dir / "assets"
    day_outputs = {
        "ml_assets": [assets / "trip_duration_predictions" / f"{setup.day}.parquet"],
        "Prefect (ephemeral)": [root / "prefect" / "ephemeral" / "predictions.parquet"],
        "Prefect (server)": [root / "prefect" / "server" / "predictions.parquet"],
        "script": [root / "script" / "predictions.parquet"],
    }
    range_outputs = {
        "ml_assets": sorted((assets / "trip_features").glob("*.parquet")),
        "Prefect (ephemeral)": sorted(
            (root / "prefect" / "ephemeral" / "backfill" / "trip_features").glob("*.parquet")
        ),
        "Prefect (server)": sorted(
            (root / "prefect" / "server" / "backfill" / "trip_features").glob("*.parquet")
        ),
        "script": sorted((root / "script" / "backfill" / "trip_features").glob("*.parquet")),
    }
    goals = []
    for what, outputs in (
        (f"the day's predictions ({setup.day})", day_outputs),
        (f"the backfill's trip_features ({setup.first}..{setup.last})", range_outputs),
    ):
        keys = {who: _trip_keys(files) for who, files in outputs.items()}
        reference = keys["ml_assets"]
        same = bool(reference) and all(found == reference for found in keys.values())
        goals.append(
            Goal(
                f"{what}: the same trips written by all",
                ", ".join(f"{who} {len(found):,}" for who, found in keys.items())
                + (" trip keys, identical sets" if same else " trip keys: the sets DIFFER"),
                same,
            )
        )
    return goals


@contextlib.contextmanager
def _tlc_server(context: BenchContext) -> Iterator[str | None]:
    if context.tiny:
        yield None
        return
    with serve_directory(tlc_files(context, ["2021-01", "2021-02", "2021-03"])) as url:
        yield url


def run(context: BenchContext) -> CaseResult:
    tiny = context.tiny
    prefect = PrefectEnv.ensure()
    result = CaseResult(
        case="peers",
        title=f"ml_assets against Prefect {PREFECT_VERSION} on the same work, "
        + ("tiny: synthetic sample source" if tiny else "real TLC files"),
        compared="scoring one day and the ingestion backfill (first run, then a re-run over "
        "unchanged inputs), each by ml_assets through the `dagster` CLI (in-process executor) "
        "and through a running `dagster dev` (runs launched over GraphQL as the UI launches them, "
        "`ML_ASSETS_EXECUTOR=in_process`), by Prefect flows of tasks (retries, `INPUTS + "
        "TASK_SOURCE` cache policy, persisted results; `bench/peers_prefect/`) in Prefect's "
        "default ephemeral mode and against a running `prefect server` on loopback, and by the "
        "plain scripts of the daily and backfill cases. All end to end: from starting the "
        "process, or sending the launch request, to the end of the work",
        columns=["work", "how", "median s", "runs s", "vs script", "vs ml_assets CLI", "output"],
    )
    notes = [
        f"Prefect's environment: `{prefect.root.relative_to(REPO_ROOT)}`, "
        + (
            f"built in this run ({prefect.created_seconds:.0f} s, not counted)"
            if prefect.created_seconds is not None
            else "reused"
        ),
    ]
    load = os.getloadavg()
    with _tlc_server(context) as url:
        setup = _prepare(context, url, prefect)
        day_count = (setup.last - setup.first).days + 1
        day = _Work(f"scoring {setup.day}")
        backfill = _Work(f"backfill of {day_count} days, first run")
        rerun = _Work(f"backfill of {day_count} days, re-run over unchanged inputs")
        _measure_without_servers(setup, day, backfill, rerun)
        _measure_prefect_server(setup, day, backfill, rerun, notes)
        _measure_dagster_dev(setup, day, backfill, rerun, notes)
        same_rows = _same_rows(setup)
    end_load = os.getloadavg()

    if SCRIPT in backfill.times:
        # The script has no cache: its re-run is the first run again.
        rerun.times[SCRIPT] = _Times(list(backfill.times[SCRIPT].seconds), "no cache: all the work")
    order = (CLI, DEV, DEV_BACKFILL, EPHEMERAL, SERVER, SCRIPT)
    for work in (day, backfill, rerun):
        script, cli = work.median(SCRIPT), work.median(CLI)
        for way in order:
            if way not in work.times:
                continue
            times = work.times[way]
            median = times.median
            result.rows.append(
                {
                    "work": work.label,
                    "how": way,
                    "median s": median,
                    "runs s": " / ".join(f"{value:.1f}" for value in times.seconds),
                    "vs script": ratio(median, script) if median and script else None,
                    "vs ml_assets CLI": ratio(median, cli) if median and cli else None,
                    "output": times.produced or None,
                }
            )
    result.goals = _goals([day, backfill, rerun]) + same_rows
    result.notes = [
        *notes,
        "the re-run's plain script row repeats the first run's times: the script has no cache "
        "and does all the work every time",
        "goals pair Prefect with the CLI and with a run launched through a running dagster dev "
        "(`launchRun`: the one run over the range that a single-run backfill starts). The "
        "launchPartitionBackfill rows, the UI's backfill dialog, are the same single run plus "
        "Dagster's backfill daemon, which looks for new backfills every 30 s (a constant of "
        "Dagster 1.13's daemon, not a setting), the run queue (every 5 s by default) and the "
        "daemon's next look, which marks the backfill completed",
        "Prefect's backfill maps its tasks over the days on its default thread pool task runner; "
        "ml_assets runs the range as one run (single-run backfill policy) in one process",
        f"load average (1, 5, 15 min) at the start {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}, "
        f"at the end {end_load[0]:.1f} / {end_load[1]:.1f} / {end_load[2]:.1f} "
        f"on {os.cpu_count()} CPUs",
    ]
    return result
