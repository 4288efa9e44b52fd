"""MLflow: the dagster-mlflow tracking resource and the model registry resource.

MLflow and dagster-mlflow (which imports MLflow) are imported only when a resource is used:
importing MLflow takes about a second, and every Dagster process imports this module when it
loads the code location.
"""

import contextlib
import random
import time
import warnings
from collections.abc import Callable, Iterator
from importlib.metadata import version
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import dagster as dg
from dagster_shared.libraries import DagsterLibraryRegistry
from pydantic import Field

from ml_assets.lib.registry import ModelRegistry

if TYPE_CHECKING:
    from dagster_mlflow.resources import MlFlow

# dagster-mlflow registers itself (the code location's library versions the UI shows) when it is
# imported; here that happens only when the resource starts, so register it for the code location.
DagsterLibraryRegistry.register("dagster-mlflow", version("dagster-mlflow"))

T = TypeVar("T")

STORE_SETUP_ATTEMPTS = 5


class MlflowTracking(Protocol):
    """The part of dagster-mlflow's `MlFlow`, the `mlflow_tracking` resource, that assets use.

    Assets annotate the resource with this rather than `MlFlow`: Dagster reads the annotation when
    the asset is defined, and naming `MlFlow` then would import MLflow.
    """

    mlflow_run_id: str | None

    def log_params(self, params: dict[str, Any]) -> object: ...


def _with_store_retries(setup: Callable[[], T]) -> T:
    """Run `setup`, retrying while the tracking store is busy.

    Two runs starting together on a fresh local SQLite store both try to create its tables; one
    of them fails with a transient database error. A short, jittered backoff lets it find the
    tables the other one made.
    """
    for attempt in range(1, STORE_SETUP_ATTEMPTS + 1):
        try:
            return setup()
        except Exception:
            if attempt == STORE_SETUP_ATTEMPTS:
                raise
            delay = 0.5 * 2 ** (attempt - 1)
            time.sleep(delay + random.uniform(0, delay))
    raise AssertionError("unreachable")


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
    },
    description="dagster-mlflow tracking: one MLflow run per Dagster run, tagged with its run id.",
)
def mlflow_tracking(init_context: dg.InitResourceContext) -> Iterator["MlFlow"]:
    """dagster-mlflow's resource, creating the experiment first where artifacts must go.

    Without a tracking server MLflow would put artifacts in `./mlruns` relative to whatever
    directory a step runs in; creating the experiment with an explicit location keeps them under
    the data directory for every process.
    """
    import mlflow

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)  # dagster-mlflow marks itself beta
        from dagster_mlflow.resources import MlFlow

    config = init_context.resource_config
    artifact_location = config.get("artifact_location")
    if artifact_location:
        client = mlflow.MlflowClient(tracking_uri=config["mlflow_tracking_uri"])

        def create_experiment() -> None:
            if client.get_experiment_by_name(config["experiment_name"]) is None:
                # Another step may create it first.
                with contextlib.suppress(mlflow.exceptions.MlflowException):
                    client.create_experiment(
                        config["experiment_name"], artifact_location=artifact_location
                    )

        _with_store_retries(create_experiment)

    def start_tracking() -> MlFlow:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.BetaWarning)
            return MlFlow(init_context)

    tracking = _with_store_retries(start_tracking)
    # dagster-mlflow sets only the tracking URI; models registered by `log_model` go to the registry
    # URI, which would otherwise stay whatever an earlier step in this process set (for example a
    # local store, in a process that ran with other settings before).
    mlflow.set_registry_uri(config["mlflow_tracking_uri"])
    try:
        yield tracking
    finally:
        # The training step ends its MLflow run itself. One still open here belongs to a step that
        # never got to run (bad config, a failed input): close it, or the next Dagster run in this
        # process would log into it.
        if mlflow.active_run() is not None:
            mlflow.end_run(status="KILLED")


class ModelRegistryResource(dg.ConfigurableResource):
    """The MLflow model registry holding every trained trip-duration model and the champion alias."""

    tracking_uri: str = Field(description="MLflow tracking (and registry) URI.")
    model_name: str = Field(description="Registered model name.")
    ui_url: str = Field(description="Base URL of the MLflow UI, for links in asset metadata.")

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.tracking_uri, self.model_name)

    def run_url(self, experiment_id: str, run_id: str) -> str:
        return f"{self.ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"

    def model_version_url(self, version: str) -> str:
        return f"{self.ui_url.rstrip('/')}/#/models/{self.model_name}/versions/{version}"
