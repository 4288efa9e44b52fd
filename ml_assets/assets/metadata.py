"""Asset metadata shared by the assets: row count, column schema, a preview and small charts.

The keys `dagster/row_count` and `dagster/column_schema` are the ones the Dagster UI shows in an
asset's overview; markdown values are rendered as tables on the asset's page. Assets with a fixed
schema also declare it on their definition (`column_schema`), so the UI lists their columns
before anything is materialized and whichever materialization is the latest.
"""

import math
from collections.abc import Mapping
from typing import Any

import dagster as dg
import polars as pl

PREVIEW_ROWS = 5
BAR_WIDTH = 20


def column_schema(schema: Mapping[str, pl.DataType]) -> dg.TableSchema:
    """A polars schema as the column table the Dagster UI shows (name and dtype of each column)."""
    return dg.TableSchema(
        columns=[dg.TableColumn(name, str(dtype)) for name, dtype in schema.items()]
    )


def table_metadata(frame: pl.DataFrame, preview_rows: int = PREVIEW_ROWS) -> dict[str, Any]:
    """Row count, column schema and the first rows of `frame` as a markdown table."""
    return {
        "dagster/row_count": frame.height,
        "dagster/column_schema": column_schema(frame.schema),
        "preview": dg.MetadataValue.md(preview_markdown(frame, preview_rows)),
    }


def preview_markdown(frame: pl.DataFrame, rows: int = PREVIEW_ROWS) -> str:
    """The first `rows` rows as a markdown table (floats to 3 decimals, `|` escaped)."""
    if frame.width == 0:
        return "_no columns_"
    header = "| " + " | ".join(_cell(name) for name in frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    lines = [header, rule]
    for row in frame.head(rows).iter_rows():
        lines.append("| " + " | ".join(_cell(value) for value in row) + " |")
    if frame.height == 0:
        lines.append("| " + " | ".join("" for _ in frame.columns) + " |")
    shown = min(rows, frame.height)
    return "\n".join([*lines, "", f"First {shown} of {frame.height:,} rows."])


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def bar(value: float, largest: float, width: int = BAR_WIDTH) -> str:
    """A text bar whose length is `value`'s share of `largest`."""
    if largest <= 0 or value <= 0 or math.isnan(value):
        return ""
    return "█" * max(1, round(width * min(value, largest) / largest))


def importance_markdown(importances: dict[str, float]) -> str:
    """Feature importances (shares summing to 1) as a ranked table with bars."""
    if not importances:
        return "_no importances_"
    largest = max(importances.values())
    lines = ["| feature | share | |", "| --- | ---: | --- |"]
    for name, share in sorted(importances.items(), key=lambda item: item[1], reverse=True):
        lines.append(f"| `{name}` | {share:.1%} | {bar(share, largest)} |")
    return "\n".join(lines)


def rmse_comparison_markdown(rmse_by_model: dict[str, float | None]) -> str:
    """RMSE of each scored model on the day, as bars on one scale (shorter is better)."""
    scored = {name: value for name, value in rmse_by_model.items() if value is not None}
    if not scored:
        return "_nothing scored_"
    largest = max(scored.values())
    lines = ["| model | RMSE (min) | |", "| --- | ---: | --- |"]
    for name, value in scored.items():
        lines.append(f"| {name} | {value:.2f} | {bar(value, largest)} |")
    return "\n".join(lines)
