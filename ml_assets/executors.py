"""Which executor runs the steps of every job, chosen by `ML_ASSETS_EXECUTOR`: no code change.

- `multiprocess` (default): each step in its own process on the machine running the run. Dagster's
  default executor, whose step processes start from a fork server that has already imported
  Dagster, polars and the code location (`FORKSERVER_PRELOAD`) where the platform has one; a run
  can still ask for another start method, or for `execution: {config: {in_process: {}}}`.
- `in_process`: every step in the run's own process (least overhead; one core per run).
- `celery`: each step is a Celery task, run by `dagster-celery` workers listening on a broker
  (RabbitMQ or Redis), on this or other machines.

Every asset output is a file under the data directory (see `PartitionedFileIOManager`), so the steps
of one run can run in different processes or on different machines sharing that directory.
Kubernetes uses the `dagster-k8s` executor, configured by the Helm chart (see docs/production.md).
"""

import multiprocessing
from collections.abc import Mapping
from typing import Any

import dagster as dg

from ml_assets.settings import (
    DEFAULT_CELERY_BACKEND,
    DEFAULT_CELERY_BROKER,
    DEFAULT_CELERY_QUEUE,
    EXECUTORS,
    Settings,
    SettingsError,
)

__all__ = [
    "CELERY_APP_SETTINGS",
    "DEFAULT_CELERY_BACKEND",
    "DEFAULT_CELERY_BROKER",
    "DEFAULT_CELERY_QUEUE",
    "EXECUTORS",
    "FORKSERVER_PRELOAD",
    "celery_executor_config",
    "executor_from_env",
]

CELERY_APP_SETTINGS: dict[str, Any] = {
    # A task is acknowledged only when it has finished, and handed back to the broker if the worker
    # process running it dies: a killed worker's step is run again by another worker instead of the
    # run waiting forever for a result that will never come. Steps must therefore be safe to run
    # twice, which they are: outputs are written atomically and MLflow runs are resumed.
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    # One step at a time per worker process: steps are long, and prefetching would park a second
    # step behind a busy one while another worker sits idle.
    "worker_prefetch_multiplier": 1,
}
"""Celery settings the executor and the workers must agree on; `deploy/celery.yaml` repeats them."""


FORKSERVER_PRELOAD = ["dagster", "polars", "ml_assets.definitions", "ml_assets.fork_server"]
"""What the fork server imports once per run, so that no step process imports it again: a process
started by Dagster's default start method (spawn) spends about a second on these imports before
its step. Side by side, scoring a day through the CLI (eight steps) took 12 s this way against 19
to 21 s with spawned processes. `ml_assets.fork_server`, last, adds what a step needs to open the
instance and freezes the garbage collector's view of it all (about a fifth less time again)."""


def _steps_from_a_fork_server(config: dict[str, Any]) -> dict[str, Any]:
    """The default executor's run config, with multiprocess steps started by a preloaded fork
    server unless the run asks for another start method."""
    if "multiprocess" not in config:
        return config
    multiprocess = dict(config["multiprocess"] or {})
    multiprocess.setdefault("start_method", {"forkserver": {"preload_modules": FORKSERVER_PRELOAD}})
    return {"multiprocess": multiprocess}


def celery_executor_config(
    settings: Settings | Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The `celery_executor` config of `settings` (default: read from the environment).

    `ML_ASSETS_CELERY_BROKER` (default RabbitMQ on localhost), `ML_ASSETS_CELERY_BACKEND` (default
    `rpc://`, results sent back over the broker) and `ML_ASSETS_CELERY_QUEUE` (default `dagster`;
    the workers must listen on it: `dagster-celery worker start -q <queue>`).
    """
    settings = _settings(settings)
    return {
        "broker": settings.celery_broker,
        "backend": settings.celery_backend,
        "config_source": {**CELERY_APP_SETTINGS, "task_default_queue": settings.celery_queue},
        # Step retry policies (for example on the MLflow and download steps) apply in workers too.
        "retries": {"enabled": {}},
    }


def executor_from_env(
    settings: Settings | Mapping[str, str] | None = None,
) -> dg.ExecutorDefinition:
    """The executor named by `ML_ASSETS_EXECUTOR` in `settings` (default: read from the environment).

    A mapping is read as an environment. The name itself is checked by `Settings.from_env`.
    """
    settings = _settings(settings)
    if settings.executor == "multiprocess":
        if "forkserver" not in multiprocessing.get_all_start_methods():  # Windows
            return dg.multi_or_in_process_executor
        return dg.multi_or_in_process_executor.configured(
            _steps_from_a_fork_server,
            config_schema=dg.multi_or_in_process_executor.config_schema.as_field(),
        )
    if settings.executor == "in_process":
        return dg.in_process_executor
    try:
        from dagster_celery import celery_executor  # an optional dependency: the `production` extra
    except ImportError as error:
        raise SettingsError(
            f"ML_ASSETS_EXECUTOR='celery': needs dagster-celery, installed by the `production` "
            f"extra (pip install -e '.[production]'); {error}"
        ) from None
    return celery_executor.configured(celery_executor_config(settings), name="celery")


def _settings(settings: Settings | Mapping[str, str] | None) -> Settings:
    return settings if isinstance(settings, Settings) else Settings.from_env(settings)
