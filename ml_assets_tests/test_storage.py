"""Atomic writes: files get the usual mode, and temp files of killed writers are cleaned up."""

import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from ml_assets.lib.storage import (
    STALE_TEMP_SECONDS,
    atomic_write,
    atomic_write_json,
    atomic_write_parquet,
    temp_path,
)


@pytest.fixture
def umask() -> Iterator[None]:
    """Restores the process umask a test changes."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield
    os.umask(previous)


@pytest.mark.usefixtures("umask")
@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_get_the_mode_the_umask_gives_any_new_file(
    tmp_path: Path, mask: int, expected: int
) -> None:
    os.umask(mask)

    atomic_write_parquet(pl.DataFrame({"a": [1]}), tmp_path / "day.parquet")
    atomic_write_json({"a": 1}, tmp_path / "day.json")
    atomic_write(tmp_path / "month.bin", lambda temp: temp.write_bytes(b"x"))
    # A file written over: the new copy gets the mode too.
    atomic_write_parquet(pl.DataFrame({"a": [2]}), tmp_path / "day.parquet")

    for name in ("day.parquet", "day.json", "month.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _with_pid(temp: Path, pid: int) -> Path:
    """`temp` as the process `pid` on this machine would have named it."""
    head, _, rest = temp.name.rpartition(f"-{os.getpid()}-")
    return temp.with_name(f"{head}-{pid}-{rest}")


def _age(path: Path, seconds: float) -> Path:
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_temp_files_of_killed_writers_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    target = tmp_path / "2021-01-01.parquet"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = _with_pid(temp_path(target), _dead_pid())
        live_elsewhere = _with_pid(temp_path(target), sleeper.pid)
        live_here = temp_path(target)
        # Another machine's writer: its pid cannot be checked here, only its age.
        other_host_young = temp_path(target).with_name(
            f".{target.name}.0badc0de-{os.getpid()}-00000000.tmp"
        )
        other_host_old = other_host_young.with_name(f".{target.name}.0badc0de-1-00000000.tmp")
        # As tempfile.mkstemp named them before the writer was part of the name.
        legacy_young = tmp_path / f".{target.name}.k2j4_x9q.tmp"
        legacy_old = tmp_path / ".2021-01-02.parquet.a1b2c3d4.tmp"
        not_ours = tmp_path / ".notes.tmp"
        for path in (dead, live_elsewhere, live_here, other_host_young, legacy_young, not_ours):
            path.write_bytes(b"")
        for path in (other_host_old, legacy_old):
            path.write_bytes(b"")
            _age(path, STALE_TEMP_SECONDS + 60)
        _age(not_ours, STALE_TEMP_SECONDS * 10)

        atomic_write_parquet(pl.DataFrame({"a": [1]}), target)

        assert pl.read_parquet(target)["a"].to_list() == [1]
        left = {path.name for path in tmp_path.iterdir()}
        assert left == {
            target.name,
            live_elsewhere.name,
            live_here.name,
            other_host_young.name,
            legacy_young.name,
            not_ours.name,
        }
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_write_killed_before_its_rename_leaves_a_temp_file_the_next_write_removes(
    tmp_path: Path,
) -> None:
    target = tmp_path / "out" / "2021-01-01.parquet"
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from ml_assets.lib.storage import atomic_write\n"
        "atomic_write(Path(sys.argv[1]), lambda temp: os.kill(os.getpid(), signal.SIGKILL))\n"
    )
    killed = subprocess.run([sys.executable, "-c", script, str(target)], timeout=60)
    assert killed.returncode == -9
    (litter,) = target.parent.iterdir()
    assert litter.name.startswith(f".{target.name}.") and litter.name.endswith(".tmp")

    atomic_write_parquet(pl.DataFrame({"a": [1]}), target)

    assert [path.name for path in target.parent.iterdir()] == [target.name]
