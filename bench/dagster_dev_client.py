"""`dagster dev` for the `peers` case: started on loopback, runs launched over its GraphQL API.

Runs are launched as the UI launches them: `launchRun` (a run of some assets for a partition or a
partition range) or `launchPartitionBackfill` (a backfill, which Dagster's daemon turns into runs
and the run queue starts). Each launch is timed from the request to the moment the webserver
reports the run or backfill finished. Starting `dagster dev` and the GraphQL requests are
`ml_assets_tests.dagster_dev`, which the tests drive it with too; this module only times them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ml_assets_tests import dagster_dev
from ml_assets_tests.dagster_dev import BACKFILL_DONE, RUN_DONE, DagsterGraphQL

POLL_SECONDS = 0.2
"""Often enough that polling adds little to a run of seconds; rarely enough to be no load on the
webserver."""


@dataclass(frozen=True)
class DagsterDev:
    """A running `dagster dev`: its API and the code location it serves."""

    api: DagsterGraphQL
    location: str
    started_seconds: float

    def run(self, assets: Sequence[str], tags: Mapping[str, str], timeout: float = 1800) -> float:
        """Launch a run of `assets` (their checks included) with `tags`; seconds until it ended."""
        started = time.perf_counter()
        run_id = self.api.launch_run(self.location, assets, tags)
        status = self.api.wait_for(
            lambda: self.api.run_status(run_id), RUN_DONE, timeout, f"run {run_id}", POLL_SECONDS
        )
        if status != "SUCCESS":
            raise RuntimeError(f"dagster dev run {run_id} of {', '.join(assets)} ended {status}")
        return time.perf_counter() - started

    def backfill(
        self, assets: Sequence[str], first: str, last: str, timeout: float = 1800
    ) -> float:
        """Launch a backfill of `assets` over `first..last`; seconds until it completed."""
        started = time.perf_counter()
        backfill_id = self.api.launch_backfill({name: (first, last) for name in assets})
        final = self.api.wait_for(
            lambda: self.api.backfill(backfill_id)["status"],
            BACKFILL_DONE,
            timeout,
            f"backfill {backfill_id}",
            POLL_SECONDS,
        )
        if final not in ("COMPLETED", "COMPLETED_SUCCESS"):
            raise RuntimeError(f"dagster dev backfill {backfill_id} ended {final}")
        return time.perf_counter() - started


@contextlib.contextmanager
def running_dagster_dev(
    module: str, *, cwd: Path, env: Mapping[str, str], log: Path, timeout: float = 300
) -> Iterator[DagsterDev]:
    """`dagster dev -m module` on a free loopback port until the block ends; stopped by its pid.

    Yields once the code location has loaded; `started_seconds` is how long that took. `cwd`
    must not be the repository root, whose `.env` would override `env`.
    """
    started = time.monotonic()
    with dagster_dev.running_dagster_dev(
        ("-m", module), cwd=cwd, env=env, log=log, timeout=timeout
    ) as url:
        api = DagsterGraphQL(url)
        location = api.wait_for_code_location(timeout - (time.monotonic() - started), log)
        yield DagsterDev(api, location, time.monotonic() - started)
