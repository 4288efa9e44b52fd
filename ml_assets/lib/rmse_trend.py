"""Whether a day's model RMSE regressed against the days before it. Plain logic, no Dagster."""

from __future__ import annotations

from datetime import date, timedelta


def trailing_window(day: str, days: int) -> list[str]:
    """The `days` calendar days before `day` (ISO dates), nearest first."""
    current = date.fromisoformat(day)
    return [(current - timedelta(days=offset)).isoformat() for offset in range(1, days + 1)]


def trailing_mean(
    rmse_by_day: dict[str, float], day: str, days: int
) -> tuple[float, list[str]] | None:
    """Mean RMSE of the evaluated days among the `days` days before `day`, and those days."""
    current = date.fromisoformat(day)
    earlier = sorted(
        key
        for key in rmse_by_day
        if current - timedelta(days=days) <= date.fromisoformat(key) < current
    )
    if not earlier:
        return None
    return sum(rmse_by_day[key] for key in earlier) / len(earlier), earlier


def is_regression(rmse: float, trailing_mean_rmse: float, margin: float) -> bool:
    """True when `rmse` exceeds the trailing mean by more than `margin` (0.1 = 10%)."""
    return rmse > trailing_mean_rmse * (1 + margin)
