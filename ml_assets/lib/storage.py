"""Atomic file writes: a failed write leaves the previous file (or none), never half of one.

Each write goes to a temp file beside its target, named after the target and its writer
(`.{target}.{host}-{pid}-{random}.tmp`), then is renamed into place. A writer killed before the
rename leaves its temp file behind; the next write into that folder removes it once it is sure
nobody is writing it any more (see `remove_stale_temp_files`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import polars as pl

STALE_TEMP_SECONDS = 6 * 3600
"""A temp file whose writer cannot be checked (another machine, an older ml_assets) is removed
once it has not been modified for this long: no write of ml_assets takes nearly as long."""

_OURS = re.compile(r"^\.(?P<target>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]{8}\.tmp$")
# What `tempfile.mkstemp` named them before the writer was part of the name.
_LEGACY = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp$")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Run `write` against a temp file beside `path`, then rename it into place.

    The file gets the usual mode of a new file (0666 less the umask), so other users of a shared
    data directory can read it as they could any file written there. Stale temp files that
    killed writers left in the folder are removed first.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path.parent)
    temp = temp_path(path)
    # O_EXCL: never reuse someone else's file. Mode 0666 is reduced by the umask, as for
    # `open(path, "w")`; tempfile.mkstemp would make it 0600 whatever the umask.
    os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        write(temp)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def temp_path(path: Path) -> Path:
    """A new temp file name beside `path`, naming this process as its writer."""
    return path.with_name(f".{path.name}.{_host()}-{os.getpid()}-{secrets.token_hex(4)}.tmp")


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Remove the temp files in `folder` that no writer will ever finish; return them.

    A temp file is stale when its writer ran on this machine (same host and process namespace)
    and that process is gone, or when it has not been modified for `STALE_TEMP_SECONDS` (a
    writer elsewhere, or one that no longer exists under a reused pid). A live writer's temp file
    is never removed. Files that are not ml_assets temp files are never touched.
    """
    removed = []
    host = _host()
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
            continue
        ours = _OURS.match(entry.name)
        if ours is None and _LEGACY.match(entry.name) is None:
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue  # its writer just renamed it into place
        writer_gone = ours is not None and ours["host"] == host and not _running(int(ours["pid"]))
        if writer_gone or age > STALE_TEMP_SECONDS:
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue  # removed by another writer cleaning up at the same time
            removed.append(Path(entry.path))
    return removed


def _host() -> str:
    """This machine and process namespace, as 8 hex digits: where a pid in a temp name is valid.

    Containers sharing a data directory (and perhaps a hostname) have their own pid namespaces,
    so the namespace is part of it: a pid is only checked where it means the same process.
    """
    try:
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        namespace = ""  # no /proc (macOS): the hostname alone
    where = f"{socket.gethostname()}/{namespace}"
    return hashlib.sha256(where.encode()).hexdigest()[:8]


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False  # gone, or a pid no process can have
    except PermissionError:
        return True  # alive, run by another user
    return True


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
