"""The daily health summary of the loop: one message with days ingested, the newest model, the
champion and its RMSE over the last week, failed checks and what is late. Plain logic, no Dagster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from ml_assets.lib.freshness import Freshness
from ml_assets.lib.notifications import Level, Notification


@dataclass(frozen=True)
class Evaluated:
    """One evaluated day: the challenger's RMSE, the champion after the decision, promoted or not."""

    day: date
    rmse: float
    champion_version: str | None
    promoted: bool


@dataclass(frozen=True)
class TrainedModel:
    day: date
    version: str | None
    val_rmse: float | None


@dataclass
class SummaryFacts:
    """What the summary of `day` says; `week` is the seven days ending on `day`."""

    day: date
    week: list[date]
    ingested: list[date] = field(default_factory=list)
    latest_model: TrainedModel | None = None
    evaluations: list[Evaluated] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    freshness: list[Freshness] = field(default_factory=list)


def _rmse_trend(evaluations: Sequence[Evaluated]) -> str:
    if not evaluations:
        return "no day evaluated this week"
    ordered = sorted(evaluations, key=lambda evaluated: evaluated.day)
    points = ", ".join(f"{e.day:%m-%d} {e.rmse:.2f}" for e in ordered)
    if len(ordered) < 2:
        return points
    change = ordered[-1].rmse - ordered[0].rmse
    direction = "worse" if change > 0 else "better" if change < 0 else "unchanged"
    return f"{points} ({change:+.2f} min over the week, {direction})"


def summary_message(facts: SummaryFacts) -> Notification:
    """The message of one day's summary; flagged as a warning when something is late or a check
    failed."""
    missing = [day for day in facts.week if day not in set(facts.ingested)]
    ingested = (
        f"{len(facts.ingested)} of {len(facts.week)} days ({facts.week[0]}..{facts.week[-1]})"
    )
    if missing:
        ingested += f"; missing {', '.join(str(day) for day in missing)}"
    model = facts.latest_model
    trained = (
        f"{model.day}"
        + (f" (v{model.version}" if model.version else " (")
        + (f", validation RMSE {model.val_rmse:.2f} min)" if model.val_rmse is not None else ")")
        if model
        else "no model yet"
    )
    newest = max(facts.evaluations, key=lambda evaluated: evaluated.day, default=None)
    if newest is None or newest.champion_version is None:
        champion = "none yet"
    else:
        promotions = [e for e in facts.evaluations if e.promoted]
        champion = f"v{newest.champion_version} (after {newest.day}; {len(promotions)} promotion(s) this week)"
    late = [
        f"{result.asset}: {late.day} ({late.blocker})"
        for result in facts.freshness
        for late in result.failing
    ]
    waiting = sum(len(result.late) - len(result.failing) for result in facts.freshness)
    lines = [
        f"**Days ingested:** {ingested}",
        f"**Newest model:** {trained}",
        f"**Champion:** {champion}",
        f"**RMSE by evaluated day:** {_rmse_trend(facts.evaluations)}",
        f"**Failed checks (24 h):** {', '.join(facts.failed_checks) or 'none'}",
        f"**Late:** {'; '.join(late) or 'nothing'}",
    ]
    if waiting:
        lines.append(f"**Waiting for the source:** {waiting} asset-day(s) (TLC not published yet)")
    troubled = bool(late or facts.failed_checks)
    return Notification(
        title=f"{'⚠️' if troubled else '📋'} ml_assets daily summary for {facts.day}",
        body="\n".join(lines),
        level=Level.warning if troubled else Level.info,
    )
