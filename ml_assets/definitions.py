"""The ml_assets code location: every asset, check, job, schedule, sensor and resource.

Built by `build_definitions` from one `Settings` object; `dagster dev`, `dg` and the `dagster` CLI
load `defs`, which reads the settings from the environment when the code location loads (not when
this module is imported).
"""

import functools
import warnings

import dagster as dg

from ml_assets.assets import build_assets
from ml_assets.checks import build_asset_checks
from ml_assets.executors import executor_from_env
from ml_assets.jobs import jobs
from ml_assets.partitions import DailyPartitioning
from ml_assets.resources import build_resources
from ml_assets.run_process import recording_run_process
from ml_assets.schedules import build_schedules
from ml_assets.sensors import build_sensors
from ml_assets.sensors.freshness import build_freshness_checks, freshness_rule
from ml_assets.settings import Settings


def build_definitions(settings: Settings) -> dg.Definitions:
    """Every definition of the loop, configured from `settings`; any number per process."""
    days = DailyPartitioning.starting(
        settings.start_date, settings.training_window_days, settings.end_date
    )
    defs = dg.Definitions(
        assets=build_assets(days),
        asset_checks=[
            *build_asset_checks(days),
            *build_freshness_checks(freshness_rule(settings, days)),
        ],
        jobs=jobs,
        schedules=build_schedules(days, settings.retrain_cron),
        sensors=build_sensors(settings, days),
        resources=build_resources(settings),
        # Every run records the process that runs it, so a run whose process died is noticed.
        executor=recording_run_process(executor_from_env(settings)),
    )
    # Jobs mixing single-run assets (raw_trips, trip_features) with per-day ones (the model) run a
    # backfill one day per run, which is what walk-forward training needs; Dagster warns about
    # the mix when it resolves the jobs, which it does once, here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*varying BackfillPolicies.*")
        defs.resolve_all_job_defs()
    return defs


@functools.cache
def _definitions_for(settings: Settings) -> dg.Definitions:
    """`build_definitions`, once per settings and process: Dagster loads the code location some
    seven times in a `dagster asset materialize` process and twice in each step's process."""
    return build_definitions(settings)


@dg.definitions
def defs() -> dg.Definitions:
    """The code location, from the settings in the environment (and `.env`, which it fills in)."""
    return _definitions_for(Settings.from_env())
