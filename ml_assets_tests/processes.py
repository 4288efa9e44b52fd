"""Child processes of tests and benchmarks: free loopback ports, default signals, waiting until a
server answers, stopping by pid.

Processes of a session here may start with SIGINT/SIGTERM ignored, and children inherit that; a
server started by a test must stop when asked, with everything it started.
"""

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def default_signal_handling() -> None:
    """`preexec_fn` of a child: SIGINT and SIGTERM do what they normally do."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def stop_process_group(process: subprocess.Popen) -> None:
    """Stop a child started with `start_new_session=True` and everything it started, by its pid."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    # Children may outlive their leader: make sure none does.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def wait_until_answering(
    url: str, process: subprocess.Popen, log: Path, what: str, timeout: float
) -> float:
    """Poll `url` until it answers 200; the seconds it took. Fails naming `what` and its log."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(
                f"{what} exited with code {process.returncode} while starting:\n"
                + log.read_text()[-3000:]
            )
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return time.monotonic() - started
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(
        f"{what} did not answer on {url} within {timeout:.0f} s:\n" + log.read_text()[-3000:]
    )
