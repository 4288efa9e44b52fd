"""The MLflow tracking resource's config matches dagster-mlflow's, which it declares itself."""

import warnings

import dagster as dg

from ml_assets.resources.mlflow import mlflow_tracking

with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    from dagster_mlflow.resources import CONFIG_SCHEMA


def _described(field: dg.Field) -> tuple[object, ...]:
    return (
        field.config_type.key,
        field.is_required,
        field.default_provided and field.default_value,
        field.description,
    )


def test_mlflow_tracking_config_is_dagster_mlflows_plus_artifact_location() -> None:
    # Declared in ml_assets (importing CONFIG_SCHEMA imports MLflow): an upgrade of dagster-mlflow
    # that changes its config must be followed here.
    fields = dict(mlflow_tracking.config_schema.config_type.fields)
    assert fields.pop("artifact_location").config_type.key == "Noneable.StringSourceType"
    assert {name: _described(field) for name, field in fields.items()} == {
        name: _described(field) for name, field in CONFIG_SCHEMA.items()
    }
