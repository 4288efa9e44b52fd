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


def atomic_write_parquet(frame: pl.DataFrame, path: Path) -> None:
    atomic_write(path, lambda temp: frame.write_parquet(temp))


def atomic_write_json(value: Mapping[str, Any], path: Path) -> None:
    atomic_write(path, lambda temp: temp.write_text(json.dumps(value, indent=2, sort_keys=True)))
