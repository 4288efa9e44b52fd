"""A code location for the stuck-run tests: a job and an asset whose first attempt hangs until its
process is killed, the run-process recording executor and the `stuck_run_monitor` sensor checking
every few seconds. `STUCK_RUN_TEST_DIR` names a folder: each attempt leaves `started-<run id>`
there, and attempts made once `release` exists there finish at once."""

import os
import time
from pathlib import Path

import dagster as dg

from ml_assets.run_process import recording_run_process
from ml_assets.sensors.stuck_runs import stuck_run_monitor_sensor

SENSOR_INTERVAL_SECONDS = 3


def _attempt(run_id: str) -> None:
    folder = Path(os.environ["STUCK_RUN_TEST_DIR"])
    (folder / f"started-{run_id}").touch()
    while not (folder / "release").exists():
        time.sleep(0.5)


@dg.op
def hang_until_released(context: dg.OpExecutionContext) -> None:
    _attempt(context.run_id)


@dg.job(tags={"dagster/max_retries": "1", "dagster/retry_on_asset_or_op_failure": "false"})
def hanging_job() -> None:
    hang_until_released()


@dg.asset
def hanging_asset(context: dg.AssetExecutionContext) -> None:
    _attempt(context.run.run_id)


defs = dg.Definitions(
    assets=[hanging_asset],
    jobs=[hanging_job],
    sensors=[stuck_run_monitor_sensor(minimum_interval_seconds=SENSOR_INTERVAL_SECONDS)],
    # Steps in the run's own process, as `scripts/setup` configures a laptop: killing it kills the run.
    executor=recording_run_process(dg.in_process_executor),
)
