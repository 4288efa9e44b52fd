"""Runs that are stuck: a run whose process died, a run that waits too long in the queue or on a
pool. Plain logic, no Dagster: which process runs a run, whether it is still alive, how long a run
has waited, and the messages that say so.

Why this exists: the local instance launches runs with Dagster's default run launcher, which cannot
tell whether a run's process is still alive, so Dagster's run monitoring never notices a run whose
process was killed (`kill -9`, out of memory, the machine restarted). Such a run stays STARTED
forever, keeps its concurrency slots and is never announced. The process that orchestrates a run
records who it is (`ProcessIdentity`, a run tag); a sensor on the same machine checks that process
and marks the run failed once it is gone.

Liveness is read from Linux's `/proc` (a process's start time tells a reused pid apart; the boot id
tells a restarted machine). Elsewhere only the pid is checked.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from ml_assets.lib.notifications import Level, Notification, run_url

RUN_PROCESS_TAG = "ml_assets/run_process"
"""Run tag: the process orchestrating the run, as `ProcessIdentity.to_tag()` writes it."""

PROC = Path("/proc")


def _boot_id(proc: Path = PROC) -> str | None:
    """This machine's boot id: it changes on every restart (Linux only)."""
    try:
        return (proc / "sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _stat_fields(pid: int, proc: Path = PROC) -> list[str] | None:
    """`/proc/<pid>/stat` from the state field on (the command name may hold spaces and ')')."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def process_start_ticks(pid: int, proc: Path = PROC) -> int | None:
    """When process `pid` started, in clock ticks since boot, or None where /proc cannot say.

    With the boot id, this tells a process apart from a later one that reuses its pid."""
    fields = _stat_fields(pid, proc)
    # Field 22 of stat is the start time; the list starts at field 3 (the state).
    return int(fields[19]) if fields and len(fields) > 19 else None


@dataclass(frozen=True)
class ProcessIdentity:
    """Who orchestrates a run: the run, the host, the machine's boot, the pid and its start."""

    run_id: str
    host: str
    pid: int
    start_ticks: int | None
    boot_id: str | None

    @classmethod
    def current(cls, run_id: str) -> ProcessIdentity:
        """The calling process, as the orchestrator of run `run_id`."""
        pid = os.getpid()
        return cls(
            run_id=run_id,
            host=socket.gethostname(),
            pid=pid,
            start_ticks=process_start_ticks(pid),
            boot_id=_boot_id(),
        )

    def to_tag(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_tags(cls, run_id: str, tags: Mapping[str, str]) -> ProcessIdentity | None:
        """The identity recorded for run `run_id`, or None when it has none of its own.

        A retry copies its parent run's tags, so the tag of a retry that has not yet recorded its
        own process names the parent's (dead) process: it is ignored by its run id.
        """
        raw = tags.get(RUN_PROCESS_TAG)
        if not raw:
            return None
        try:
            identity = cls(**json.loads(raw))
        except (ValueError, TypeError):
            return None
        return identity if identity.run_id == run_id else None

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}"


class Liveness(StrEnum):
    """What a host-local check can say about a recorded process."""

    alive = "alive"
    gone = "gone"
    other_host = "other_host"
    """Recorded on another machine (a Celery or Kubernetes worker, a colleague's laptop sharing
    the instance database): nothing on this machine can tell, so it is left alone."""


@dataclass(frozen=True)
class Verdict:
    liveness: Liveness
    reason: str


def check_process(
    identity: ProcessIdentity, *, host: str | None = None, proc: Path = PROC
) -> Verdict:
    """Whether the process `identity` names still runs, seen from this machine (or `host`)."""
    here = host if host is not None else socket.gethostname()
    if identity.host != here:
        return Verdict(Liveness.other_host, f"recorded on host {identity.host}, not {here}")
    boot = _boot_id(proc)
    if identity.boot_id and boot and identity.boot_id != boot:
        return Verdict(Liveness.gone, "the machine has restarted since the run started")
    try:
        os.kill(identity.pid, 0)
    except ProcessLookupError:
        return Verdict(Liveness.gone, f"no process {identity.pid} exists any more")
    except PermissionError:
        pass  # it exists, owned by another user
    fields = _stat_fields(identity.pid, proc)
    if fields and fields[0] in ("Z", "X"):
        # Killed, but its parent has not collected its exit status yet.
        return Verdict(Liveness.gone, f"process {identity.pid} has exited (a zombie)")
    now_ticks = process_start_ticks(identity.pid, proc)
    if None not in (identity.start_ticks, now_ticks) and now_ticks != identity.start_ticks:
        return Verdict(Liveness.gone, f"process {identity.pid} has exited and its pid was reused")
    return Verdict(Liveness.alive, f"process {identity.pid} is running")


def dead_run_message(identity: ProcessIdentity, reason: str, started_at: datetime | None) -> str:
    """The failure message of a run whose process died without recording an end."""
    since = (
        f" (run started {started_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC)" if started_at else ""
    )
    return (
        f"The run's process ({identity.describe()}) died without finishing the run: "
        f"{reason}{since}. It was killed (kill -9, out of memory) or its machine stopped. "
        "Marked failed by the stuck_run_monitor sensor; the job's run retries, if any, apply."
    )


# --- waiting too long -------------------------------------------------------------------------


@dataclass(frozen=True)
class WaitLimits:
    """How long a run may wait in the queue, and a step on a pool, before it is announced.

    From `ML_ASSETS_QUEUED_ALERT_MINUTES` and `ML_ASSETS_POOL_WAIT_ALERT_MINUTES` (see
    `ml_assets.settings`).
    """

    queued_minutes: float = 60.0
    pool_minutes: float = 60.0


@dataclass(frozen=True)
class Waiting:
    """A run (or one of its steps) waiting since `since` for `what` (the queue, or a pool)."""

    run_id: str
    job: str
    partition: str | None
    since: datetime
    pool: str | None = None
    step: str | None = None

    @property
    def key(self) -> str:
        """Identifies one wait, so each is announced once."""
        return f"{self.run_id}:{self.step}" if self.step else self.run_id


def overdue(waits: list[Waiting], limit_minutes: float, now: datetime) -> list[Waiting]:
    """The waits longer than `limit_minutes` at `now`, longest first."""
    late = [wait for wait in waits if (now - wait.since).total_seconds() > limit_minutes * 60]
    return sorted(late, key=lambda wait: wait.since)


def run_partition(tags: Mapping[str, str]) -> str | None:
    """A run's partition from its tags, or `first..last` for a run over a range."""
    if "dagster/partition" in tags:
        return tags["dagster/partition"]
    start = tags.get("dagster/asset_partition_range_start")
    end = tags.get("dagster/asset_partition_range_end")
    return f"{start}..{end}" if start and end else None


def _waited(since: datetime, now: datetime) -> str:
    minutes = int((now - since).total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def waiting_message(
    wait: Waiting, *, now: datetime, limit_minutes: float, ui_url: str
) -> Notification:
    """A run waits in the queue, or a step of it on a pool, longer than the limit."""
    where = f"on pool {wait.pool}" if wait.pool else "in the run queue"
    suffix = f" [{wait.partition}]" if wait.partition else ""
    facts = {
        "Job": wait.job,
        "Partition": wait.partition,
        "Step": wait.step,
        "Waiting": f"{where} for {_waited(wait.since, now)} (alert after {limit_minutes:g} min)",
        "Since": f"{wait.since.astimezone(UTC):%Y-%m-%d %H:%M} UTC",
        "Why": (
            f"every slot of pool {wait.pool} is taken by other steps "
            f"(`dagster instance concurrency get {wait.pool}`)"
            if wait.pool
            else "the run queue is full or a tag concurrency limit holds it back "
            "(Runs > Queued in the UI)"
        ),
        "Run": wait.run_id,
    }
    lines = [f"**{name}:** {value}" for name, value in facts.items() if value is not None]
    lines.append(f"**In Dagster:** {run_url(ui_url, wait.run_id)}")
    return Notification(
        title=f"⏳ {wait.job}{suffix} waiting {where} for {_waited(wait.since, now)}",
        body="\n".join(lines),
        level=Level.warning,
    )
