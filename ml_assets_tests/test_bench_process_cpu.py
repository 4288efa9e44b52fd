"""The bench's CPU accounting counts the processes a case starts, those that ended included."""

import subprocess
import sys

import pytest

from bench.process_cpu import descendants_cpu

BURN_SECONDS = 0.4
BURN = f"""
import time
started = time.process_time()
while time.process_time() - started < {BURN_SECONDS}:
    pass
"""
# A process that waits for a CPU-bound child it started, then lives on, as a code server outlives
# the run processes it started: the ended child's time is in this process's `cutime`.
WAITER = f"""
import subprocess, sys, time
subprocess.run([sys.executable, "-c", {BURN!r}], check=True)
print("child done", flush=True)
time.sleep(60)
"""
# The root whose descendants are read: the waiter is its only child.
ROOT = f"""
import subprocess, sys
waiter = subprocess.Popen([sys.executable, "-c", {WAITER!r}], stdout=subprocess.PIPE, text=True)
print(waiter.stdout.readline().strip(), flush=True)
waiter.wait()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")
def test_an_ended_process_is_counted_in_the_process_that_waited_for_it() -> None:
    root = subprocess.Popen(
        [sys.executable, "-c", ROOT], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert root.stdout is not None
        assert root.stdout.readline().strip() == "child done"
        spent = descendants_cpu(root.pid)
    finally:
        root.kill()
        subprocess.run(["pkill", "-KILL", "-s", str(root.pid)], check=False)
        root.wait()
    assert spent is not None
    # The ended child's burn and the waiter's own start, counted once, not lost when it ended.
    assert BURN_SECONDS <= sum(spent.values()) < BURN_SECONDS + 3
    assert set(spent) == {"other"}
