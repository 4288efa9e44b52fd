"""MLflow as assets see it: the model registry resource, and the interface of the tracking resource.

The tracking resource itself (dagster-mlflow's, started lazily) is in
`ml_assets.resources.mlflow_tracking`. Both resources log the tracking URI they use when they start
and bound MLflow's HTTP retries for the step (`ml_assets.lib.mlflow_server`). They reach MLflow
only when the step first needs it: a server that is down then fails that step, within
`server_deadline_seconds`, with a message naming `MLFLOW_TRACKING_URI`, and the step's retry policy
tries again later. (A failure while a resource starts would fail the whole run at once, without
the step's retry policy.)

Neither module imports MLflow when it is imported: that takes about a second, and every Dagster
process imports them when it loads the code location.
"""

from typing import TYPE_CHECKING, Any, Protocol

import dagster as dg
from pydantic import Field

from ml_assets.lib.mlflow_server import (
    DEFAULT_DEADLINE_SECONDS,
    bound_client_retries,
    check_tracking_server,
    is_server_uri,
)
from ml_assets.lib.registry import ModelRegistry
from ml_assets.lib.setting_values import redact_url

if TYPE_CHECKING:
    from mlflow import ActiveRun


def log_tracking_uri(log: "dg.DagsterLogManager | None", uri: str, what: str) -> None:
    """Log which MLflow the resource `what` uses, and whether that is a server to reach."""
    if log is None:
        return
    where = "a tracking server" if is_server_uri(uri) else "a local store (no server to reach)"
    log.info(f"{what}: MLflow tracking URI {redact_url(uri)} (MLFLOW_TRACKING_URI), {where}")


class MlflowTracking(Protocol):
    """The part of the `mlflow_tracking` resource that assets use.

    Assets annotate the resource with this rather than the class: Dagster reads the annotation
    when the asset is defined, and naming a class that wraps dagster-mlflow's `MlFlow` there would
    import MLflow.
    """

    @property
    def mlflow_run_id(self) -> str | None: ...

    def start_run(self) -> "ActiveRun": ...

    def log_params(self, params: dict[str, Any]) -> object: ...


class ModelRegistryResource(dg.ConfigurableResource):
    """The MLflow model registry holding every trained trip-duration model and the champion alias."""

    tracking_uri: str = Field(description="MLflow tracking (and registry) URI.")
    model_name: str = Field(description="Registered model name.")
    ui_url: str = Field(description="Base URL of the MLflow UI, for links in asset metadata.")
    server_deadline_seconds: float = Field(
        default=DEFAULT_DEADLINE_SECONDS,
        gt=0,
        description=(
            "How long a step waits for the MLflow tracking server to answer, retries included, "
            "before it fails naming MLFLOW_TRACKING_URI."
        ),
    )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        bound_client_retries()
        log_tracking_uri(context.log, self.tracking_uri, f"model_registry ({self.model_name})")

    def registry(self) -> ModelRegistry:
        """The registry, once its tracking server answers (`TrackingServerUnavailable` if not)."""
        check_tracking_server(self.tracking_uri, self.server_deadline_seconds)
        return ModelRegistry(self.tracking_uri, self.model_name)

    def run_url(self, experiment_id: str, run_id: str) -> str:
        return f"{self.ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"

    def model_version_url(self, version: str) -> str:
        return f"{self.ui_url.rstrip('/')}/#/models/{self.model_name}/versions/{version}"
