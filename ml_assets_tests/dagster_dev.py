"""`dagster dev` as a test fixture: started on a free loopback port, stopped by its own pid."""

import contextlib
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from ml_assets_tests.processes import default_signal_handling, free_port, stop_process_group


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
            preexec_fn=default_signal_handling,
        )
    try:
        if while_starting is not None:
            while_starting()
        _wait_until_serving(url, server, log, timeout)
        yield url
    finally:
        stop_process_group(server)
