"""Asset metadata every table shares: row count and column schema, named as the UI expects."""

from typing import Any

import dagster as dg
import polars as pl


def table_metadata(frame: pl.DataFrame) -> dict[str, Any]:
    return {
        "dagster/row_count": frame.height,
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name, str(dtype)) for name, dtype in frame.schema.items()]
        ),
    }
