"""The dagster-mlflow tracking resource: one MLflow run per Dagster run, started when a step first
logs to it. Assets see it as `ml_assets.resources.mlflow.MlflowTracking`.

MLflow and dagster-mlflow (which imports MLflow) are imported only when the resource is used:
importing MLflow takes about a second, and every Dagster process imports this module when it
loads the code location. Like the registry resource, it logs the tracking URI when it starts,
bounds MLflow's HTTP retries, and reaches MLflow only when the step first needs it.
"""

import contextlib
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import dagster as dg
import tenacity

from ml_assets.lib.mlflow_server import (
    DEFAULT_DEADLINE_SECONDS,
    bound_client_retries,
    check_tracking_server,
)
from ml_assets.resources.mlflow import log_tracking_uri

if TYPE_CHECKING:
    from dagster_mlflow.resources import MlFlow
    from mlflow import ActiveRun

# dagster-mlflow registers itself in Dagster's list of library versions when it is imported. It
# is imported only when a step uses MLflow, so the UI's library list of the code location does not
# show it: that list is cosmetic, and the registry that fills it is not public Dagster API.

STORE_SETUP_ATTEMPTS = 5


def store_retrying(deadline_seconds: float) -> tenacity.Retrying:
    """Retries while the tracking store is busy.

    Two runs starting together on a fresh local SQLite store both try to create its tables; one
    of them fails with a transient database error. Up to 5 attempts with a short, jittered backoff
    (0.5, 1, 2, 4 s plus up to as much again) let it find the tables the other one made. No
    attempt starts after `deadline_seconds`, so a store that keeps failing is not retried for
    minutes.
    """
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(STORE_SETUP_ATTEMPTS)
        | tenacity.stop_after_delay(deadline_seconds),
        # delay + uniform(0, delay), delay = 0.5 * 2 ** (attempt - 1)
        wait=tenacity.wait_exponential(multiplier=0.5)
        + tenacity.wait_random_exponential(multiplier=0.5),
        retry=tenacity.retry_if_exception_type(Exception),
        reraise=True,
    )


class LazyMlflowRun:
    """dagster-mlflow's `MlFlow`, started when a step first asks for its MLflow run.

    dagster-mlflow starts an MLflow run as soon as the resource starts, before the step has
    checked its config; a refused config then left an empty KILLED run in the experiment. Here a
    step that fails before it logs anything leaves no MLflow run behind, and a run that logged
    keeps its history (ended FAILED by the step, or KILLED here).
    """

    def __init__(self, init_context: dg.InitResourceContext, deadline_seconds: float) -> None:
        self._init_context = init_context
        self._config = init_context.resource_config
        self._deadline_seconds = deadline_seconds
        self._tracking: MlFlow | None = None

    @property
    def tracking_uri(self) -> str:
        return self._config["mlflow_tracking_uri"]

    @property
    def mlflow_run_id(self) -> str | None:
        """The MLflow run of this Dagster run, once a step has started it."""
        return self._tracking.mlflow_run_id if self._tracking is not None else None

    @property
    def started(self) -> bool:
        return self._tracking is not None

    def _start_tracking(self) -> "MlFlow":
        import mlflow

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.BetaWarning)  # dagster-mlflow marks itself beta
            from dagster_mlflow.resources import MlFlow

        check_tracking_server(self.tracking_uri, self._deadline_seconds)
        artifact_location = self._config.get("artifact_location")
        if artifact_location:
            # Without a tracking server MLflow would put artifacts in `./mlruns` relative to
            # whatever directory a step runs in; creating the experiment with an explicit
            # location keeps them under the data directory for every process.
            client = mlflow.MlflowClient(tracking_uri=self.tracking_uri)
            name = self._config["experiment_name"]

            def create_experiment() -> None:
                if client.get_experiment_by_name(name) is None:
                    # Another step may create it first.
                    with contextlib.suppress(mlflow.exceptions.MlflowException):
                        client.create_experiment(name, artifact_location=artifact_location)

            store_retrying(self._deadline_seconds)(create_experiment)

        def start_tracking() -> MlFlow:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", dg.BetaWarning)
                return MlFlow(self._init_context)

        tracking = store_retrying(self._deadline_seconds)(start_tracking)
        # dagster-mlflow sets only the tracking URI; models registered by `log_model` go to the
        # registry URI, which would otherwise stay whatever an earlier step in this process set
        # (for example a local store, in a process that ran with other settings before).
        mlflow.set_registry_uri(self.tracking_uri)
        return tracking

    def start_run(self) -> "ActiveRun":
        """The MLflow run of this Dagster run, active: started, found again, or resumed.

        One MLflow run per Dagster run, found by its `dagster_run_id` tag; a retried step finds
        the run its previous attempt ended and resumes it.
        """
        import mlflow

        if self._tracking is None:
            self._tracking = self._start_tracking()
        else:
            check_tracking_server(self.tracking_uri, self._deadline_seconds)
        return mlflow.active_run() or mlflow.start_run(run_id=self._tracking.mlflow_run_id)

    def log_params(self, params: dict[str, Any]) -> None:
        """Log `params` to the active run, in chunks of 100 (MLflow's limit per call)."""
        if self._tracking is None:
            raise RuntimeError("mlflow_tracking: call start_run() before logging")
        self._tracking.log_params(params)

    def close(self) -> None:
        """End a run the step left open (it ends its run itself when it gets that far)."""
        if self._tracking is None:
            return
        import mlflow

        # Left open only by a step that did not get to end it: close it, or the next Dagster run
        # in this process would log into it.
        if mlflow.active_run() is not None:
            mlflow.end_run(status="KILLED")


@dg.resource(
    config_schema={
        # dagster-mlflow's CONFIG_SCHEMA, declared here because importing it imports MLflow;
        # ml_assets_tests/test_mlflow_resource.py checks that the two stay the same.
        "experiment_name": dg.Field(
            dg.StringSource, is_required=True, description="MlFlow experiment name."
        ),
        "mlflow_tracking_uri": dg.Field(
            dg.Noneable(dg.StringSource),
            default_value=None,
            is_required=False,
            description="MlFlow tracking server uri.",
        ),
        "parent_run_id": dg.Field(
            dg.Noneable(str),
            default_value=None,
            is_required=False,
            description="Mlflow run ID of parent run if this is a nested run.",
        ),
        "mlflow_run_id": dg.Field(
            dg.Noneable(str),
            default_value=None,
            is_required=False,
            description="Mlflow run ID to use for this run.",
        ),
        "env": dg.Field(dg.Permissive(), description="Environment variables for mlflow setup."),
        "env_to_tag": dg.Field(
            dg.Noneable(list),
            default_value=None,
            is_required=False,
            description="List of environment variables to log as tags in mlflow.",
        ),
        "extra_tags": dg.Field(
            dg.Permissive(), description="Any extra key-value tags to log to mlflow."
        ),
        "artifact_location": dg.Field(
            dg.Noneable(dg.StringSource),
            default_value=None,
            is_required=False,
            description=(
                "Where a new experiment keeps its artifacts when MLflow runs without a tracking "
                "server (a local sqlite store); a server decides this itself."
            ),
        ),
        "server_deadline_seconds": dg.Field(
            float,
            default_value=DEFAULT_DEADLINE_SECONDS,
            is_required=False,
            description=(
                "How long a step waits for the MLflow tracking server to answer, retries "
                "included, before it fails naming MLFLOW_TRACKING_URI."
            ),
        ),
    },
    description=(
        "dagster-mlflow tracking: one MLflow run per Dagster run, tagged with its run id, started "
        "when a step first logs to it."
    ),
)
def mlflow_tracking(init_context: dg.InitResourceContext) -> Iterator[LazyMlflowRun]:
    """dagster-mlflow's resource, reaching MLflow only when the step starts its MLflow run.

    Logs the tracking URI and bounds MLflow's HTTP retries when it starts; `start_run()` checks
    that a tracking server answers within `server_deadline_seconds`, creates the experiment where
    artifacts must go (a local store) and starts, finds or resumes the Dagster run's MLflow run.
    """
    config = init_context.resource_config
    bound_client_retries()
    log_tracking_uri(init_context.log, config["mlflow_tracking_uri"], "mlflow_tracking")
    run = LazyMlflowRun(init_context, config["server_deadline_seconds"])
    try:
        yield run
    finally:
        run.close()
