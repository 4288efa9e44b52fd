"""What every benchmark case shares: timing, child-process peak memory, results and rendering.

The machine the benchmarks run on is shared and noisy, so a case never reports an absolute time on
its own: everything it compares is measured side by side in the same run, interleaved repeat by
repeat, and reported as a ratio of medians.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_TLC_DIR = REPO_ROOT.parent / "shared" / "data" / "nyc-tlc"


class CaseSkipped(RuntimeError):
    """A case cannot run here (for instance the real TLC files are absent); the message says why."""


@dataclass(frozen=True)
class BenchContext:
    """How a run of the suite was asked to behave."""

    repeat: int = 3
    tiny: bool = False
    """Tiny inputs (a few synthetic days): checks that a case runs, measures nothing meaningful."""
    days: int | None = None
    """How many days a case that takes a count of days covers (`--days`); None: its default."""
    work_dir: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="ml_assets_bench_"))
    )


def tlc_dir() -> Path:
    """The real NYC TLC files: `../shared/data/nyc-tlc`, or `ML_ASSETS_SHARED_TLC_DIR`."""
    configured = os.environ.get("ML_ASSETS_SHARED_TLC_DIR")
    return Path(configured) if configured else SHARED_TLC_DIR


def require_tlc_files(*names: str) -> Path:
    """The folder holding `names`, or CaseSkipped naming what is missing and where it was looked for."""
    folder = tlc_dir()
    missing = [name for name in names if not (folder / name).exists()]
    if missing:
        raise CaseSkipped(
            f"needs the real TLC files {', '.join(missing)} in {folder} "
            "(set ML_ASSETS_SHARED_TLC_DIR to point elsewhere)"
        )
    return folder


@dataclass
class Goal:
    """A target from the issue and whether this run met it."""

    description: str
    measured: str
    met: bool

    @property
    def verdict(self) -> str:
        return "met" if self.met else "MISSED"


@dataclass
class CaseResult:
    """One case's table (`columns` x `rows`), its goals and notes on how it was measured."""

    case: str
    title: str
    compared: str
    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["goals"] = [{**asdict(goal), "verdict": goal.verdict} for goal in self.goals]
        return data


def median_seconds(run: Callable[[], Any], repeat: int) -> tuple[float, list[float]]:
    """Median wall time of `repeat` calls of `run`, and every time measured."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def interleaved_medians(
    runs: Mapping[str, Callable[[], Any]], repeat: int
) -> dict[str, tuple[float, list[float]]]:
    """Time several alternatives in turn, repeat by repeat, so noise hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return {name: (statistics.median(values), values) for name, values in times.items()}


@dataclass(frozen=True)
class ChildRun:
    """A finished child process: its wall time, peak resident memory and output."""

    seconds: float
    cpu_seconds: float
    """User plus system CPU time of the process: far steadier than wall time on a busy machine."""
    peak_rss_bytes: int
    returncode: int
    stdout: str
    stderr: str

    def check(self, what: str) -> ChildRun:
        if self.returncode != 0:
            tail = "\n".join(self.stderr.strip().splitlines()[-15:])
            raise RuntimeError(f"{what} exited with code {self.returncode}:\n{tail}")
        return self


def run_child(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> ChildRun:
    """Run a process to its end; measure its wall time and peak RSS (native memory included).

    `os.wait4` gives the resource usage of exactly this child (its `ru_maxrss`), which counts what
    polars, numpy and scikit-learn allocate outside Python's heap, unlike tracemalloc.
    Grandchildren are not counted.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(args),
            stdout=out,
            stderr=err,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ChildRun(
            seconds=seconds,
            cpu_seconds=usage.ru_utime + usage.ru_stime,
            peak_rss_bytes=usage.ru_maxrss * 1024,  # Linux reports KiB
            returncode=process.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


def python_child(
    code: str, *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> ChildRun:
    """`run_child` of `python -c code` with this interpreter and the repository importable."""
    child_env = dict(os.environ if env is None else env)
    child_env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), *filter(None, [child_env.get("PYTHONPATH")])]
    )
    return run_child([sys.executable, "-c", code], env=child_env, cwd=cwd)


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("inf")


def gib(size_bytes: float) -> float:
    return size_bytes / 2**30


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0 or abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render_markdown(result: CaseResult) -> str:
    """The case as markdown: a heading, what it compared, the table, goals and notes."""
    lines = [f"### {result.case}: {result.title}", ""]
    if result.skipped:
        return "\n".join([*lines, f"Skipped: {result.skipped}", ""])
    lines += [f"Compared: {result.compared}", ""]
    lines.append("| " + " | ".join(result.columns) + " |")
    lines.append(
        "|"
        + "|".join("---" if index == 0 else "---:" for index, _ in enumerate(result.columns))
        + "|"
    )
    for row in result.rows:
        lines.append("| " + " | ".join(_cell(row.get(column)) for column in result.columns) + " |")
    lines.append("")
    for goal in result.goals:
        lines.append(f"- Goal: {goal.description}. Measured: {goal.measured}. **{goal.verdict}**")
    for note in result.notes:
        lines.append(f"- Note: {note}")
    lines.append("")
    return "\n".join(lines)


def write_json(results: Sequence[CaseResult], path: Path, context: BenchContext) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "repeat": context.repeat,
        "tiny": context.tiny,
        "cases": {result.case: result.to_json() for result in results},
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
