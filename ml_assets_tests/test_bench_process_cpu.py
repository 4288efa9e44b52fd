"""The bench's CPU accounting counts the processes a case starts, those that ended included."""

import subprocess
import sys
import time

import pytest

from bench.process_cpu import descendants_cpu, spent_between

BURN_SECONDS = 0.4
BURN = f"""
import time
started = time.process_time()
while time.process_time() - started < {BURN_SECONDS}:
    pass
"""
# A parent that waits for a CPU-bound child it started, then lives on (as a code server outlives
# the run processes it started): the ended child's time is in the parent's `cutime`.
PARENT = f"""
import subprocess, sys, time
subprocess.run([sys.executable, "-c", {BURN!r}], check=True)
print("child done", flush=True)
time.sleep(30)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")
def test_an_ended_grandchild_is_counted_in_the_parent_that_waited_for_it() -> None:
    before = descendants_cpu()
    assert before is not None
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "child done"
        time.sleep(0.05)
        after = descendants_cpu()
    finally:
        parent.kill()
        parent.wait()
    assert after is not None
    spent = sum(spent_between(before, after).values())
    # The child's burn and two interpreters starting: counted once, not lost when it ended.
    assert BURN_SECONDS <= spent < BURN_SECONDS + 3
