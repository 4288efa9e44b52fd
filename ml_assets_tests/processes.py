"""Child processes of tests and benchmarks: free loopback ports, default signals, stopping by pid.

Processes of a session here may start with SIGINT/SIGTERM ignored, and children inherit that; a
server started by a test must stop when asked, with everything it started.
"""

import contextlib
import os
import signal
import socket
import subprocess


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
