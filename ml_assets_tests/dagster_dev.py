"""`dagster dev` as a test fixture: started on a free loopback port, stopped by its own pid."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _default_signal_handling() -> None:
    """In the child: a test runner may ignore SIGINT/SIGTERM; dagster dev must not inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _wait_until_serving(url: str, server: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"dagster dev exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(1)
    pytest.fail(
        f"dagster dev did not answer on {url} within {timeout:.0f}s:\n{log.read_text()[-3000:]}"
    )


def _stop(server: subprocess.Popen) -> None:
    """Stop dagster dev and everything it started (its own process group), by its pid."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
    # Code servers and run workers share its group; make sure none outlives the test.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)


@contextlib.contextmanager
def running_dagster_dev(
    target: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    timeout: float = 240,
    while_starting: Callable[[], None] | None = None,
) -> Iterator[str]:
    """`dagster dev <target>` on 127.0.0.1; yields its URL once it answers, stops it afterwards.

    `cwd` must not be the repository root: dagster dev would let a developer's `.env` there
    override `env`. `while_starting` runs once the process is started, before waiting for it to
    answer. The server runs in its own process group with default signal handling, so
    stopping it by its pid stops its webserver, daemon, code servers and runs with it.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as output:
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "dagster", "dev", *target),
                *("--host", "127.0.0.1", "--port", str(port)),
            ],
            cwd=cwd,
            env=dict(env),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_signal_handling,
        )
    try:
        if while_starting is not None:
            while_starting()
        _wait_until_serving(url, server, log, timeout)
        yield url
    finally:
        _stop(server)
