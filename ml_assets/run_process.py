"""Every run records which process orchestrates it, so a run whose process died can be told apart
from one still running (see `ml_assets.sensors.stuck_runs`).

The record is made by the executor, because the executor's `execute` is the one piece of a run that
always runs in the process orchestrating it: the run worker of a launched run, the `dagster asset
materialize` / `dagster job execute` process of a CLI run, the orchestrating process of a Celery run
(whose steps run elsewhere). Resources and loggers would not do: with the multiprocess executor
they start in every step's own short-lived process.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from ml_assets.lib.run_health import RUN_PROCESS_TAG, ProcessIdentity


class _RecordingExecutor(dg.Executor):
    """Records the orchestrating process as a run tag, then lets `inner` do the work."""

    def __init__(self, inner: dg.Executor) -> None:
        self._inner = inner

    def execute(self, plan_context: Any, execution_plan: Any) -> Iterator[dg.DagsterEvent]:
        identity = ProcessIdentity.current(plan_context.run_id)
        try:
            plan_context.instance.add_run_tags(
                plan_context.run_id, {RUN_PROCESS_TAG: identity.to_tag()}
            )
        except Exception as error:  # a missing record must never fail the run
            plan_context.log.warning(
                f"could not record the run's process ({identity.describe()}): {error}; "
                "if this process dies, the run is not marked failed automatically"
            )
        yield from self._inner.execute(plan_context, execution_plan)

    @property
    def retries(self) -> Any:
        return self._inner.retries

    @property
    def step_dependency_config(self) -> Any:
        return self._inner.step_dependency_config

    def get_step_event_or_retry_event(self, *args: Any, **kwargs: Any) -> Any:
        return self._inner.get_step_event_or_retry_event(*args, **kwargs)

    def log_failure_or_retry_event_after_error(self, *args: Any, **kwargs: Any) -> Any:
        return self._inner.log_failure_or_retry_event_after_error(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # Anything else an executor offers (Celery's app settings, ...) is the inner one's.
        return getattr(self._inner, name)


def recording_run_process(executor_def: dg.ExecutorDefinition) -> dg.ExecutorDefinition:
    """`executor_def`, with every run recording the process orchestrating it as the
    `ml_assets/run_process` tag (run id, host, boot id, pid and its start time).

    Same name, config and requirements as `executor_def`: run config written for it still applies.
    """
    create = executor_def.executor_creation_fn
    if create is None:
        raise ValueError(f"executor {executor_def.name!r} has no executor_creation_fn to wrap")
    return dg.ExecutorDefinition(
        name=executor_def.name,
        config_schema=executor_def.config_schema,
        requirements=executor_def.get_requirements,
        executor_creation_fn=lambda init_context: _RecordingExecutor(create(init_context)),
        description=executor_def.description,
    )
