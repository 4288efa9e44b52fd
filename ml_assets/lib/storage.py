"""Atomic file writes: a failed write leaves the previous file (or none), never half of one."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import polars as pl


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Run `write` against a temp file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temp = Path(temp_name)
    try:
        write(temp)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


STAMP_KEY = "ml_assets"
"""The key of a parquet file's footer metadata under which `atomic_write_parquet` keeps its stamp."""


def atomic_write_parquet(
    frame: pl.DataFrame, path: Path, stamp: Mapping[str, Any] | None = None
) -> None:
    """Write `frame` to `path` atomically, with `stamp` (JSON-able) in the file's footer.

    The stamp says what the file was built from; it is written and replaced together with the
    rows it describes, so it can never speak for a different file.
    """
    footer = {STAMP_KEY: json.dumps(stamp, sort_keys=True)} if stamp is not None else None
    atomic_write(path, lambda temp: frame.write_parquet(temp, metadata=footer))


def read_stamp(path: Path) -> dict[str, Any] | None:
    """The stamp `atomic_write_parquet` wrote into `path`'s footer; None if it has none.

    Reads only the footer (a few kilobytes), not the rows. A file that is not readable parquet,
    or whose stamp is not JSON, raises a ValueError naming the file.
    """
    try:
        footer = pl.read_parquet_metadata(path)
    except (OSError, pl.exceptions.PolarsError) as error:
        raise ValueError(f"{path}: not a readable parquet file ({error})") from error
    stamp = footer.get(STAMP_KEY)
    if stamp is None:
        return None
    try:
        value = json.loads(stamp)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path}: its footer's `{STAMP_KEY}` entry is not JSON: {error}"
        ) from error
    return value if isinstance(value, dict) else None


def atomic_write_json(value: Mapping[str, Any], path: Path) -> None:
    atomic_write(path, lambda temp: temp.write_text(json.dumps(value, indent=2, sort_keys=True)))
