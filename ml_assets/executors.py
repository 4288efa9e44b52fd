"""Which executor runs the steps of every job, chosen by `ML_ASSETS_EXECUTOR`: no code change.

- `multiprocess` (default): each step in its own process on the machine running the run. Dagster's
  default; a run can still ask for `execution: {config: {in_process: {}}}`.
- `in_process`: every step in the run's own process (least overhead; one core per run).
- `celery`: each step is a Celery task, run by `dagster-celery` workers listening on a broker
  (RabbitMQ or Redis), on this or other machines.

Every asset output is a file under the data directory (see `PartitionedFileIOManager`), so the steps
of one run can run in different processes or on different machines sharing that directory.
Kubernetes uses the `dagster-k8s` executor, configured by the Helm chart (see the README).
"""

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg

EXECUTORS = ("multiprocess", "in_process", "celery")

DEFAULT_CELERY_BROKER = "amqp://guest:guest@127.0.0.1:5672//"
DEFAULT_CELERY_BACKEND = "rpc://"
DEFAULT_CELERY_QUEUE = "dagster"

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


def celery_executor_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The `celery_executor` config read from the environment.

    `ML_ASSETS_CELERY_BROKER` (default RabbitMQ on localhost), `ML_ASSETS_CELERY_BACKEND` (default
    `rpc://`, results sent back over the broker) and `ML_ASSETS_CELERY_QUEUE` (default `dagster`;
    the workers must listen on it: `dagster-celery worker start -q <queue>`).
    """
    env = os.environ if environ is None else environ
    return {
        "broker": env.get("ML_ASSETS_CELERY_BROKER") or DEFAULT_CELERY_BROKER,
        "backend": env.get("ML_ASSETS_CELERY_BACKEND") or DEFAULT_CELERY_BACKEND,
        "config_source": {
            **CELERY_APP_SETTINGS,
            "task_default_queue": env.get("ML_ASSETS_CELERY_QUEUE") or DEFAULT_CELERY_QUEUE,
        },
        # Step retry policies (for example on the MLflow and download steps) apply in workers too.
        "retries": {"enabled": {}},
    }


def executor_from_env(environ: Mapping[str, str] | None = None) -> dg.ExecutorDefinition:
    """The executor named by `ML_ASSETS_EXECUTOR`, configured from the environment."""
    env = os.environ if environ is None else environ
    name = env.get("ML_ASSETS_EXECUTOR") or "multiprocess"
    if name == "multiprocess":
        return dg.multi_or_in_process_executor
    if name == "in_process":
        return dg.in_process_executor
    if name == "celery":
        from dagster_celery import celery_executor  # an optional dependency: the `production` extra

        return celery_executor.configured(celery_executor_config(env), name="celery")
    raise ValueError(f"ML_ASSETS_EXECUTOR={name!r}: expected one of {', '.join(EXECUTORS)}")
