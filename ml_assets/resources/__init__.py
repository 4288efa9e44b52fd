"""Resources: the trip source, file storage for asset outputs and MLflow."""

import dagster as dg

from ml_assets.resources.mlflow import ModelRegistryResource
from ml_assets.resources.mlflow_tracking import mlflow_tracking
from ml_assets.resources.notifier import NOTIFY_URLS_ENV_VAR, Notifier
from ml_assets.resources.parquet_io_manager import PartitionedFileIOManager
from ml_assets.resources.promotion import PromotionPolicy
from ml_assets.resources.trip_source import TripSource
from ml_assets.settings import Settings


def build_resources(settings: Settings) -> dict[str, object]:
    """The resources of the code location, configured from `settings`."""
    return {
        "io_manager": PartitionedFileIOManager(
            base_dir=str(settings.assets_dir), settings_in_force=settings.in_force()
        ),
        "trip_source": TripSource(
            source=settings.source,
            taxi_type=settings.taxi_type,
            base_url=settings.tlc_base_url,
            zone_lookup_url=settings.tlc_zone_lookup_url,
            cache_dir=str(settings.cache_dir),
            connect_timeout_seconds=settings.tlc_connect_timeout_seconds,
            read_timeout_seconds=settings.tlc_read_timeout_seconds,
            deadline_seconds=settings.tlc_deadline_seconds,
        ),
        "mlflow_tracking": mlflow_tracking.configured(
            {
                "experiment_name": settings.mlflow_experiment,
                "mlflow_tracking_uri": settings.mlflow_tracking_uri,
                "artifact_location": settings.mlflow_artifact_location,
                "server_deadline_seconds": settings.mlflow_deadline_seconds,
            }
        ),
        "model_registry": ModelRegistryResource(
            tracking_uri=settings.mlflow_tracking_uri,
            model_name=settings.model_name,
            ui_url=settings.mlflow_ui_url,
            server_deadline_seconds=settings.mlflow_deadline_seconds,
        ),
        "promotion_policy": PromotionPolicy(
            margin=settings.promotion_margin,
            approval=settings.promotion_approval,  # type: ignore[arg-type]
        ),
        "notifier": Notifier(
            # An EnvVar keeps the URLs (they hold tokens and passwords) out of the UI and the
            # run config; an unset variable cannot be an EnvVar, so no channel is used then.
            urls=dg.EnvVar(NOTIFY_URLS_ENV_VAR) if settings.notify_configured else "",
            ui_url=settings.ui_url,
        ),
    }
