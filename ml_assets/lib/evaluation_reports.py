"""Figures of a day's evaluation: predicted against actual, residuals by hour of day and by
borough, and the RMSE of challenger, champion and baseline over the last weeks by partition date.

Plain code, no Dagster. Figures are drawn with matplotlib's object API on an explicit Agg canvas:
no pyplot, no global backend switch, safe in any thread or process.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

# numpy and matplotlib are imported where figures are drawn: every Dagster process imports this
# module when it loads the code location, and most never draw anything.
if TYPE_CHECKING:
    import numpy as np

FIGURE_INCHES = (6.0, 4.0)
DPI = 80
"""480 x 320 pixels: readable on an asset page, small enough to keep in its metadata."""
SCATTER_POINTS = 4000

REPORTS = (
    "predicted_vs_actual",
    "residuals_by_hour",
    "residuals_by_borough",
    "rmse_by_day",
)
"""The report files of an evaluation, `<name>.png` each."""


@dataclass(frozen=True)
class DayError:
    """The RMSE of each model scored on one partition day."""

    day: str
    challenger: float | None
    champion: float | None
    baseline: float | None


def _figure() -> tuple[object, object]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGURE_INCHES, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _save(figure: object, path: Path) -> Path:
    # Written next to the target and renamed: a reader never sees half a PNG.
    partial = path.with_suffix(".png.tmp")
    figure.savefig(partial, format="png", dpi=DPI)  # type: ignore[attr-defined]
    partial.replace(path)
    return path


def predicted_vs_actual(actual: np.ndarray, predicted: np.ndarray, title: str, path: Path) -> Path:
    """Scatter of predicted against actual minutes (a sample of trips), with the diagonal."""
    import numpy as np

    figure, axes = _figure()
    rows = np.random.default_rng(0).permutation(len(actual))[:SCATTER_POINTS]
    axes.scatter(actual[rows], predicted[rows], s=4, alpha=0.3)  # type: ignore[attr-defined]
    top = float(np.percentile(np.concatenate([actual, predicted]), 99.5)) if len(actual) else 1.0
    axes.plot([0, top], [0, top], color="black", linewidth=1)  # type: ignore[attr-defined]
    axes.set(  # type: ignore[attr-defined]
        xlim=(0, top), ylim=(0, top), xlabel="actual (min)", ylabel="predicted (min)", title=title
    )
    return _save(figure, path)


def _residual_bars(residuals: pl.DataFrame, by: str, title: str, path: Path) -> Path:
    import numpy as np

    grouped = (
        residuals.group_by(by)
        .agg(
            pl.col("residual").mean().alias("mean"),
            pl.col("residual").abs().mean().alias("mean_abs"),
        )
        .sort(by)
    )
    labels = [str(value) for value in grouped[by].to_list()]
    positions = np.arange(len(labels))
    figure, axes = _figure()
    axes.bar(positions - 0.2, grouped["mean"].to_numpy(), 0.4, label="mean residual")  # type: ignore[attr-defined]
    axes.bar(positions + 0.2, grouped["mean_abs"].to_numpy(), 0.4, label="mean |residual|")  # type: ignore[attr-defined]
    axes.axhline(0, color="black", linewidth=0.8)  # type: ignore[attr-defined]
    axes.set_xticks(positions, labels, rotation=45 if by != "pickup_hour" else 0, fontsize=8)  # type: ignore[attr-defined]
    axes.set(xlabel=by, ylabel="predicted - actual (min)", title=title)  # type: ignore[attr-defined]
    axes.legend(fontsize=8)  # type: ignore[attr-defined]
    return _save(figure, path)


def rmse_by_day(history: Sequence[DayError], title: str, path: Path) -> Path:
    """RMSE of challenger, champion and baseline for each partition day (not run time)."""
    from datetime import date

    ordered = sorted(history, key=lambda error: error.day)
    days = [date.fromisoformat(error.day) for error in ordered]
    figure, axes = _figure()
    for name in ("challenger", "champion", "baseline"):
        values = [getattr(error, name) for error in ordered]
        points = [
            (day, value) for day, value in zip(days, values, strict=True) if value is not None
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            axes.plot(xs, ys, marker="o", markersize=3, label=name)  # type: ignore[attr-defined]
    from matplotlib.dates import DateFormatter, DayLocator

    # One tick per day (at most about eight), labelled by date: these are partition days.
    axes.xaxis.set_major_locator(DayLocator(interval=max(1, len(days) // 8)))  # type: ignore[attr-defined]
    axes.xaxis.set_major_formatter(DateFormatter("%Y-%m-%d"))  # type: ignore[attr-defined]
    axes.set(xlabel="partition day", ylabel="RMSE (min)", title=title)  # type: ignore[attr-defined]
    axes.legend(fontsize=8)  # type: ignore[attr-defined]
    figure.autofmt_xdate()  # type: ignore[attr-defined]
    return _save(figure, path)


def write_reports(
    folder: Path,
    *,
    day: str,
    challenger_version: str,
    actual: np.ndarray,
    predicted: np.ndarray,
    pickup_hour: np.ndarray,
    borough: Sequence[str | None],
    history: Sequence[DayError],
) -> dict[str, Path]:
    """Draw the four reports of one evaluation into `folder`; their paths by name (`REPORTS`)."""
    folder.mkdir(parents=True, exist_ok=True)
    residuals = pl.DataFrame(
        {
            "residual": predicted - actual,
            "pickup_hour": pickup_hour,
            "pickup_borough": [value or "unknown" for value in borough],
        }
    )
    model = f"v{challenger_version} on {day}"
    return {
        "predicted_vs_actual": predicted_vs_actual(
            actual, predicted, f"predicted vs actual, {model}", folder / "predicted_vs_actual.png"
        ),
        "residuals_by_hour": _residual_bars(
            residuals,
            "pickup_hour",
            f"residuals by hour, {model}",
            folder / "residuals_by_hour.png",
        ),
        "residuals_by_borough": _residual_bars(
            residuals,
            "pickup_borough",
            f"residuals by pickup borough, {model}",
            folder / "residuals_by_borough.png",
        ),
        "rmse_by_day": rmse_by_day(
            history, f"RMSE by partition day, through {day}", folder / "rmse_by_day.png"
        ),
    }


def reports_markdown(reports: Mapping[str, Path], numbers: str = "") -> str:
    """The reports as one markdown block of inline PNG images, after `numbers` (markdown: the
    scores the figures explain), so the figures are read next to their numbers.

    Dagster's UI (1.13) shows them: its markdown renderer allows `data:` image sources, and
    the page fetches nothing. An entry this long sits behind `[Show Markdown]` in the asset
    page's metadata table (only entries under 1,000 characters are drawn in the table itself);
    the dialog it opens shows the numbers and the figures.
    """
    blocks = [numbers] if numbers else []
    for name, path in reports.items():
        encoded = base64.b64encode(path.read_bytes()).decode("ascii")
        blocks.append(f"**{name.replace('_', ' ')}**\n\n![{name}](data:image/png;base64,{encoded})")
    return "\n\n".join(blocks)
