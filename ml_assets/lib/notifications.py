"""What the alerts say: title and markdown body of every message, built from plain data.

No Dagster and no sending here: the sensors collect the facts, these functions word them, and the
`Notifier` resource hands them to Apprise, which formats them for each channel (Slack blocks,
e-mail, a JSON webhook).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Level(StrEnum):
    """How a message is flagged; the values are Apprise's notification types."""

    info = "info"
    success = "success"
    warning = "warning"
    failure = "failure"


@dataclass(frozen=True)
class Notification:
    """One message: a short title and a markdown body."""

    title: str
    body: str
    level: Level


ERROR_SUMMARY_CHARACTERS = 300


def run_url(ui_url: str, run_id: str) -> str:
    """The run's page in the Dagster UI."""
    return f"{ui_url.rstrip('/')}/runs/{run_id}"


def summarize_error(message: str, limit: int = ERROR_SUMMARY_CHARACTERS) -> str:
    """The first non-empty line of an error, cut to `limit` characters: enough to recognize it;
    the full stack trace is one click away in the UI."""
    first_line = next((line.strip() for line in message.splitlines() if line.strip()), "")
    if len(first_line) <= limit:
        return first_line
    return first_line[: limit - 1].rstrip() + "…"


def _lines(facts: dict[str, str | None], link: str | None = None) -> str:
    lines = [f"**{name}:** {value}" for name, value in facts.items() if value is not None]
    if link:
        # A bare URL survives every channel's formatting (plain-text e-mail drops link targets).
        lines.append(f"**In Dagster:** {link}")
    return "\n".join(lines)


def _partition_suffix(partition: str | None) -> str:
    return f" [{partition}]" if partition else ""


def run_failure_message(
    *,
    job: str,
    run_id: str,
    partition: str | None,
    failing_steps: list[str],
    error: str,
    ui_url: str,
) -> Notification:
    """A run failed: which job and day, which step, why, and where to look."""
    return Notification(
        title=f"❌ {job}{_partition_suffix(partition)} failed",
        body=_lines(
            {
                "Job": job,
                "Partition": partition or "(not partitioned)",
                "Failed step": ", ".join(failing_steps) or "(the run failed outside any step)",
                "Error": summarize_error(error) or "(no error message)",
                "Run": run_id,
            },
            run_url(ui_url, run_id),
        ),
        level=Level.failure,
    )


def _minutes(value: float | None) -> str | None:
    return None if value is None else f"{value:.2f} min"


def run_success_message(
    *,
    job: str,
    run_id: str,
    partition: str | None,
    raw_rows: int | None,
    feature_rows: int | None,
    rmse: float | None,
    baseline_rmse: float | None,
    promoted: bool | None,
    champion_version: str | None,
    model_version: str | None,
    ui_url: str,
    candidate_version: str | None = None,
    candidate_link: str | None = None,
) -> Notification:
    """A run succeeded: the numbers of the day (trips, model quality, champion changes, a
    candidate awaiting approval)."""
    comparison = None
    if rmse is not None:
        comparison = _minutes(rmse)
        if baseline_rmse is not None:
            comparison += f" (baseline {baseline_rmse:.2f}, {rmse - baseline_rmse:+.2f})"
    if promoted is None:
        champion = champion_version and f"v{champion_version}"
    elif promoted:
        champion = f"new champion promoted: v{champion_version}"
    else:
        champion = f"unchanged (v{champion_version})" if champion_version else "unchanged"
    if candidate_version:
        champion = (
            f"{champion}; v{candidate_version} passed the gate and is a candidate awaiting "
            "approval: approve or reject it with review_candidate_job in the Launchpad"
            + (f" (MLflow: {candidate_link})" if candidate_link else "")
        )
    return Notification(
        title=f"✅ {job}{_partition_suffix(partition)} succeeded",
        body=_lines(
            {
                "Job": job,
                "Partition": partition,
                "Trips": None if raw_rows is None else f"{raw_rows:,}",
                "Feature rows": None if feature_rows is None else f"{feature_rows:,}",
                "Model trained": model_version and f"v{model_version}",
                "RMSE": comparison,
                "Champion": champion,
            },
            run_url(ui_url, run_id),
        ),
        level=Level.success,
    )


def failed_check_message(
    *,
    asset: str,
    check: str,
    partition: str | None,
    severity: str,
    description: str | None,
    run_id: str,
    job: str | None,
    ui_url: str,
) -> Notification:
    """An asset check failed (whether or not its run failed)."""
    icon = "⚠️" if severity == "WARN" else "❌"
    return Notification(
        title=f"{icon} check {check} on {asset}{_partition_suffix(partition)} failed ({severity})",
        body=_lines(
            {
                "Asset": asset,
                "Check": check,
                "Partition": partition,
                "Severity": severity,
                "Finding": summarize_error(description or "") or "(no description)",
                "Job": job,
                "Run": run_id,
            },
            run_url(ui_url, run_id),
        ),
        level=Level.warning if severity == "WARN" else Level.failure,
    )


def model_regression_message(
    *,
    partition: str,
    rmse: float,
    trailing_mean_rmse: float,
    trailing_days: list[str],
    margin: float,
    run_id: str,
    ui_url: str,
) -> Notification:
    """The evaluated model's RMSE is worse than the recent average by more than the margin."""
    worse_by = rmse / trailing_mean_rmse - 1
    return Notification(
        title=f"📉 model quality regression [{partition}]: RMSE {rmse:.2f} vs {trailing_mean_rmse:.2f}",
        body=_lines(
            {
                "Partition": partition,
                "RMSE": _minutes(rmse),
                "Trailing mean RMSE": f"{trailing_mean_rmse:.2f} min over {len(trailing_days)} "
                f"day(s) ({trailing_days[0]}..{trailing_days[-1]})",
                "Worse by": f"{worse_by:.1%} (alert above {margin:.0%})",
                "Run": run_id,
            },
            run_url(ui_url, run_id),
        ),
        level=Level.warning,
    )
