"""Catch-up: which runs fill the days the daily loop missed, oldest first. Plain logic, no Dagster.

The loop of one day D is four steps, each needing what the steps before it produced:

- `ingest`: `raw_trips` and `trip_features` of D (a range of days in one run: both assets have a
  single-run backfill policy);
- `train`: `duration_model` of D, which reads `trip_features` of D-(window-1)..D;
- `score`: `model_evaluation` of D, which reads `duration_model` of D-1 and `trip_features` of
  D-window..D, then `trip_duration_predictions` of D, which read the evaluation (it names the model
  that serves D). Each day's promotion (after its evaluation) may move the champion the next
  day is scored against, so evaluations run strictly one day after the other, oldest first; a
  day whose evaluation exists but whose predictions do not is scored on its own. The first day
  of the loop has no model before it: its scoring records that and needs no model.

`plan_catch_up` looks at what exists and what is running, and returns the runs that can start
now, oldest first, plus why each other day of the window waits. Days are never requested twice:
a day with a step running is left alone, and a day whose catch-up run of a step failed stays
blocked (the failure is announced, and the freshness check names it) until someone reruns it.

One module though past 250 lines: the state it reads, the plan and the four step rules that fill
it are one decision, best read top to bottom.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum

CATCH_UP_STEP_TAG = "ml_assets/catch_up"
"""Run tag of the catch-up's runs: the step (`ingest`, `train`, `score`, `zones`)."""

MAX_TRAININGS_IN_FLIGHT = 2
"""At most this many catch-up trainings are queued or running at once, so evaluations (which
wait for the model of the day before) are not queued behind a month of training runs."""


class Step(StrEnum):
    zones = "zones"
    ingest = "ingest"
    train = "train"
    score = "score"


STEP_ASSETS: dict[Step, tuple[str, ...]] = {
    Step.zones: ("taxi_zones",),
    Step.ingest: ("raw_trips", "trip_features"),
    Step.train: ("duration_model",),
    Step.score: ("model_evaluation", "trip_duration_predictions"),
}


def days_between(first: date, last: date) -> list[date]:
    """Every day from `first` to `last`, inclusive (empty if `last` is before `first`)."""
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


def catch_up_window(first_day: date, newest_day: date, catch_up_days: int) -> list[date]:
    """The `catch_up_days` days ending on `newest_day` (the newest day whose trips can exist),
    none before the first partition `first_day`."""
    return days_between(max(first_day, newest_day - timedelta(days=catch_up_days - 1)), newest_day)


@dataclass(frozen=True)
class StepRuns:
    """What the runs of one step say about each day: running now, or whose latest run failed
    (the run's id)."""

    running: frozenset[date] = frozenset()
    failed: Mapping[date, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LoopState:
    """What exists and what runs, as the catch-up sees it.

    `materialized`: the days each asset has, by asset name (`taxi_zones` is present or not: any
    day in its set counts). `steps`: the catch-up's own runs, by step. `busy_days`: days that runs
    launched by something else (a schedule, a backfill, a person) are working on right now.
    """

    first_day: date
    newest_day: date
    materialized: Mapping[str, frozenset[date]]
    steps: Mapping[Step, StepRuns] = field(default_factory=dict)
    busy_days: frozenset[date] = frozenset()

    def has(self, asset: str, day: date) -> bool:
        return day in self.materialized.get(asset, frozenset())

    def runs(self, step: Step) -> StepRuns:
        return self.steps.get(step, StepRuns())


@dataclass(frozen=True)
class PlannedRun:
    """One run to launch: `step` over `first`..`last` (one day except for `ingest`), for the
    `assets` named."""

    step: Step
    first: date
    last: date
    assets: tuple[str, ...]

    @property
    def days(self) -> str:
        return self.first.isoformat() if self.first == self.last else f"{self.first}..{self.last}"

    @property
    def run_key(self) -> str:
        """The same step over the same days is launched once, ever."""
        return f"catch_up:{self.step}:{'+'.join(self.assets)}:{self.days}"


@dataclass
class CatchUpPlan:
    """The runs to launch now, oldest first, and why each other day of the window waits."""

    window: list[date]
    runs: list[PlannedRun] = field(default_factory=list)
    waiting: dict[date, str] = field(default_factory=dict)

    def wait(self, day: date, reason: str) -> None:
        self.waiting.setdefault(day, reason)

    def summary(self) -> str:
        if not self.window:
            return "no day to catch up"
        span = f"{self.window[0]}..{self.window[-1]}"
        launched = ", ".join(f"{run.step} {run.days}" for run in self.runs) or "nothing"
        waits = "; ".join(f"{day}: {why}" for day, why in sorted(self.waiting.items())[:5])
        more = f" (and {len(self.waiting) - 5} more)" if len(self.waiting) > 5 else ""
        return f"window {span}: launching {launched}" + (
            f"; waiting: {waits}{more}" if waits else ""
        )


def _ranges(days: Iterable[date]) -> list[tuple[date, date]]:
    """Consecutive days grouped into (first, last) ranges, oldest first."""
    ranges: list[tuple[date, date]] = []
    for day in sorted(days):
        if ranges and day == ranges[-1][1] + timedelta(days=1):
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges


def _span(days: list[date]) -> str:
    return ", ".join(f"{a}" if a == b else f"{a}..{b}" for a, b in _ranges(days))


def plan_catch_up(state: LoopState, catch_up_days: int, training_window_days: int) -> CatchUpPlan:
    """The runs that fill the missing days of the last `catch_up_days` days, oldest first.

    Ingestion also covers the `training_window_days` days before the window, which the first
    models and evaluations of the window read.
    """
    window = catch_up_window(state.first_day, state.newest_day, catch_up_days)
    plan = CatchUpPlan(window=window)
    if not window:
        return plan
    if not state.materialized.get("taxi_zones"):
        zones = state.runs(Step.zones)
        if zones.failed:
            for day in window:
                plan.wait(day, f"taxi_zones failed (run {next(iter(zones.failed.values()))})")
        elif not zones.running:
            plan.runs.append(PlannedRun(Step.zones, window[0], window[0], STEP_ASSETS[Step.zones]))
        for day in window:
            plan.wait(day, "waiting for taxi_zones")
        return plan
    _plan_ingestion(state, plan, window, training_window_days)
    _plan_training(state, plan, window, training_window_days)
    _plan_scoring(state, plan, window, training_window_days)
    return plan


def _plan_ingestion(
    state: LoopState, plan: CatchUpPlan, window: list[date], training_window_days: int
) -> None:
    ingest = state.runs(Step.ingest)
    first = max(state.first_day, window[0] - timedelta(days=training_window_days))
    missing = [
        day
        for day in days_between(first, window[-1])
        if not (state.has("raw_trips", day) and state.has("trip_features", day))
    ]
    ready = []
    for day in missing:
        if day in ingest.failed:
            plan.wait(day, f"ingestion failed (run {ingest.failed[day]})")
        elif day in ingest.running or day in state.busy_days:
            plan.wait(day, "ingestion running")
        else:
            ready.append(day)
            plan.wait(day, "ingestion launched")
    for first_day, last_day in _ranges(ready):
        plan.runs.append(PlannedRun(Step.ingest, first_day, last_day, STEP_ASSETS[Step.ingest]))


def _missing_features(state: LoopState, first: date, last: date) -> list[date]:
    return [
        day
        for day in days_between(max(state.first_day, first), last)
        if not state.has("trip_features", day)
    ]


def _plan_training(
    state: LoopState, plan: CatchUpPlan, window: list[date], training_window_days: int
) -> None:
    train = state.runs(Step.train)
    in_flight = len(train.running & set(window))
    for day in window:
        if state.has("duration_model", day):
            continue
        if day in train.failed:
            plan.wait(day, f"training failed (run {train.failed[day]})")
        elif day in train.running or day in state.busy_days:
            plan.wait(day, "training running")
        elif missing := _missing_features(
            state, day - timedelta(days=training_window_days - 1), day
        ):
            plan.wait(day, f"training waits for trip_features of {_span(missing)}")
        elif in_flight >= MAX_TRAININGS_IN_FLIGHT:
            plan.wait(day, "training queued behind earlier days")
        else:
            plan.runs.append(PlannedRun(Step.train, day, day, STEP_ASSETS[Step.train]))
            in_flight += 1


def _plan_scoring(
    state: LoopState, plan: CatchUpPlan, window: list[date], training_window_days: int
) -> None:
    score = state.runs(Step.score)
    evaluation_running = bool(score.running & set(window))
    chain_open = True  # evaluations go one day at a time, oldest first
    for day in window:
        evaluated = state.has("model_evaluation", day)
        if evaluated and state.has("trip_duration_predictions", day):
            continue
        if day in score.failed:
            plan.wait(day, f"scoring failed (run {score.failed[day]})")
            chain_open = chain_open and evaluated
            continue
        if day in score.running or day in state.busy_days:
            plan.wait(day, "scoring running")
            chain_open = chain_open and evaluated
            continue
        if evaluated:  # only the predictions are missing: they need nothing else
            assets = ("trip_duration_predictions",)
            plan.runs.append(PlannedRun(Step.score, day, day, assets))
            continue
        if not chain_open:
            plan.wait(day, "evaluation waits for the evaluation of an earlier day")
            continue
        chain_open = False
        if evaluation_running:
            plan.wait(day, "evaluation waits for the evaluation of an earlier day")
        elif day > state.first_day and not state.has("duration_model", day - timedelta(days=1)):
            plan.wait(day, f"evaluation waits for duration_model of {day - timedelta(days=1)}")
        elif missing := _missing_features(state, day - timedelta(days=training_window_days), day):
            plan.wait(day, f"evaluation waits for trip_features of {_span(missing)}")
        else:
            plan.runs.append(PlannedRun(Step.score, day, day, STEP_ASSETS[Step.score]))
