"""Freshness of the daily loop: which days are past their deadline without their asset, and what
blocks each. Plain logic, no Dagster.

Day D's `raw_trips` and `trip_duration_predictions` are due on day D+1 at the deadline time
(`ML_ASSETS_FRESHNESS_DEADLINE`, UTC). A due day without the asset is late, unless its trips do not
exist yet (TLC has not published the month): such a day is listed as waiting for the source and
does not fail the check, since no run could have produced it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from ml_assets.lib.catch_up import days_between
from ml_assets.lib.notifications import Level, Notification, run_url, summarize_error

UPSTREAM: dict[str, tuple[tuple[str, int], ...]] = {
    "raw_trips": (),
    "trip_duration_predictions": (
        ("raw_trips", 0),
        ("trip_features", 0),
        ("duration_model", -1),
        ("model_evaluation", 0),
    ),
}
"""What each checked asset needs for day D, in order: (asset, day offset)."""


def deadline_of(day: date, deadline: str) -> datetime:
    """When `day` is due: the next day at `deadline` (HH:MM, UTC)."""
    hours, minutes = (int(part) for part in deadline.split(":"))
    return datetime.combine(day + timedelta(days=1), time(hours, minutes), tzinfo=UTC)


def due_days(
    now: datetime, first_day: date, lookback_days: int, deadline: str, last_day: date | None = None
) -> list[date]:
    """The days past their deadline at `now`, the newest `lookback_days` of them at most, none
    after `last_day` (the end of a historical run) if set."""
    last = now.astimezone(UTC).date() - timedelta(days=1)
    if deadline_of(last, deadline) > now:
        last -= timedelta(days=1)
    last = min(last, last_day or date.max)
    return days_between(max(first_day, last - timedelta(days=lookback_days - 1)), last)


@dataclass(frozen=True)
class RunFacts:
    """The latest run that worked on a day: id, job, status, and when it failed, its error and the
    checks it failed."""

    run_id: str
    job: str
    status: str
    error: str | None = None
    failed_checks: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return self.status in ("FAILURE", "CANCELED")

    @property
    def running(self) -> bool:
        return self.status in ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")


@dataclass(frozen=True)
class LateDay:
    day: date
    blocker: str
    waiting_for_source: bool = False


@dataclass
class Freshness:
    """The freshness of one asset: the days due, and those late with what blocks them."""

    asset: str
    deadline: str
    due: list[date]
    late: list[LateDay] = field(default_factory=list)

    @property
    def failing(self) -> list[LateDay]:
        """Late days that some run could have produced (not waiting for the source)."""
        return [late for late in self.late if not late.waiting_for_source]

    @property
    def passed(self) -> bool:
        return not self.failing

    def description(self) -> str:
        if not self.due:
            return f"no day of {self.asset} is due yet"
        span = f"{self.due[0]}..{self.due[-1]}"
        if not self.late:
            return f"every day of {span} has {self.asset} (due by {self.deadline} UTC the next day)"
        parts = []
        if self.failing:
            parts.append(
                f"{len(self.failing)} day(s) of {self.asset} late "
                f"(past {self.deadline} UTC the next day): "
                + "; ".join(f"{late.day}: {late.blocker}" for late in self.failing)
            )
        waiting = [late for late in self.late if late.waiting_for_source]
        if waiting:
            parts.append(
                f"{len(waiting)} day(s) waiting for the source: "
                + "; ".join(sorted({late.blocker for late in waiting}))
            )
        return ". ".join(parts)

    def signature(self) -> str:
        """Changes when the result does: to record a new check evaluation only then."""
        return "|".join(f"{late.day}:{late.blocker}" for late in self.late) or "fresh"


def blocker(
    asset: str,
    day: date,
    materialized: Mapping[str, frozenset[date]],
    run: RunFacts | None,
    source_missing: str | None,
    ui_url: str,
) -> LateDay:
    """Why `asset` of `day` is missing: the source not published (`source_missing` names the
    file), a run working on it, a failed run (its error, failed checks and link), or the first
    missing input."""
    if source_missing:
        return LateDay(day, f"TLC has not published {source_missing} yet", waiting_for_source=True)
    if run is not None and run.running:
        return LateDay(day, f"{run.job} is running ({run_url(ui_url, run.run_id)})")
    if run is not None and run.failed:
        checks = f"; failed checks: {', '.join(run.failed_checks)}" if run.failed_checks else ""
        error = summarize_error(run.error or "", 200) or run.status.lower()
        return LateDay(day, f"{run.job} failed: {error}{checks} ({run_url(ui_url, run.run_id)})")
    for upstream, offset in UPSTREAM[asset]:
        needed = day + timedelta(days=offset)
        if needed not in materialized.get(upstream, frozenset()):
            return LateDay(
                day,
                f"{upstream} of {needed} is missing and no run was launched "
                "(is catch_up_sensor or daily_schedule on?)",
            )
    return LateDay(day, "no run was launched (is catch_up_sensor or daily_schedule on?)")


def freshness_of(
    asset: str,
    due: Sequence[date],
    deadline: str,
    materialized: Mapping[str, frozenset[date]],
    runs: Mapping[date, RunFacts],
    unpublished_file: Mapping[date, str],
    ui_url: str,
) -> Freshness:
    """The freshness of `asset` over the `due` days; `unpublished_file` names, for days whose
    month TLC has not published, the missing file."""
    have = materialized.get(asset, frozenset())
    return Freshness(
        asset=asset,
        deadline=deadline,
        due=list(due),
        late=[
            blocker(asset, day, materialized, runs.get(day), unpublished_file.get(day), ui_url)
            for day in due
            if day not in have
        ],
    )


def late_message(results: Sequence[Freshness], new_days: Sequence[date]) -> Notification:
    """One message for every asset with late days: each day and what blocks it."""
    failing = [result for result in results if result.failing]
    days = sorted({late.day for result in failing for late in result.failing})
    title = (
        f"⏰ late: {', '.join(result.asset for result in failing)} missing for {len(days)} day(s) "
        f"({days[0]}..{days[-1]})"
        if days
        else "⏰ late"
    )
    lines = []
    for result in failing:
        lines.append(f"**{result.asset}** (due by {result.deadline} UTC the next day):")
        lines.extend(
            f"- {late.day}{' (new)' if late.day in new_days else ''}: {late.blocker}"
            for late in result.failing
        )
    return Notification(title=title, body="\n".join(lines), level=Level.warning)


def fresh_again_message(results: Sequence[Freshness]) -> Notification:
    assets = ", ".join(result.asset for result in results)
    return Notification(
        title=f"✅ on time again: {assets}",
        body="\n".join(result.description() for result in results),
        level=Level.success,
    )
