"""CPU time spent by the processes a case starts, read from Linux's /proc.

A process's CPU time in /proc counts its own user and system time, and separately the time of its
children it has waited for (`cutime`, `cstime`). Summing both over every live descendant of this
process counts each process once, ended ones included: an ended run process is counted in the code
server that started it and waited for it. The `models` case reads it before and after a backfill
to show how much CPU Dagster's processes spent on it (runs, daemon, webserver, code server), which
on a machine of N cores puts a floor of CPU / N under the backfill's wall time.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

PROC = Path("/proc")
RUN_PROCESSES = "run processes"
"""The runs a code server started (and waited for): Dagster's `api grpc` spawns one per run."""


def _stat(pid: int) -> tuple[int, list[str]] | None:
    """The parent pid and the fields after the command of /proc/<pid>/stat, or None if gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command is in parentheses and may hold spaces: the fields start after its last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), fields


def _command(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _role(command: str) -> str:
    if "api grpc" in command:
        return "code server"
    if "dagster._daemon" in command or "dagster-daemon" in command:
        return "daemon"
    if "dagster_webserver" in command or "dagster-webserver" in command:
        return "webserver"
    if " dev " in f"{command} ":
        return "dagster dev"
    return "other"


def descendants_cpu(root: int | None = None) -> dict[str, float] | None:
    """CPU seconds of every descendant of `root` (default: this process), by role; None where
    /proc is not available (not Linux).

    Each process's own time goes to its role (code server, daemon, webserver, other); the time of
    the children a code server waited for goes to `RUN_PROCESSES`, that of other processes' ended
    children to their parent's role.
    """
    if not PROC.joinpath("self", "stat").exists():
        return None
    root = os.getpid() if root is None else root
    ticks = os.sysconf("SC_CLK_TCK")
    stats = {}
    children: dict[int, list[int]] = defaultdict(list)
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (found := _stat(int(entry.name))) is not None:
            stats[int(entry.name)] = found[1]
            children[found[0]].append(int(entry.name))
    spent: dict[str, float] = defaultdict(float)
    waiting = list(children[root])
    while waiting:
        pid = waiting.pop()
        waiting += children[pid]
        # utime, stime, cutime, cstime are fields 14 to 17 of stat; 12 to 15 after the command.
        utime, stime, cutime, cstime = (int(value) for value in stats[pid][11:15])
        role = _role(_command(pid))
        spent[role] += (utime + stime) / ticks
        spent[RUN_PROCESSES if role == "code server" else role] += (cutime + cstime) / ticks
    return dict(spent)


def spent_between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds by role from `before` to `after` (two `descendants_cpu` readings)."""
    return {role: after[role] - before.get(role, 0.0) for role in after}
