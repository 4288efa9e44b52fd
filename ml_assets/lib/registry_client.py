"""The MLflow registry calls ml_assets makes, one registered model at a time.

A registry that answers a call with an error (a restarting server, a 5xx, a permission error)
raises `RegistryError`, naming the registry and the call: an error must never read as "no
champion yet", which would promote a challenger without comparing it with anything. Only "no such
registered model" means that no version exists.

What the versions' tags mean, and which version is champion when: `ml_assets.lib.registry`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ml_assets.lib.registry_labels import CHAMPION_ALIAS, TRAINED_THROUGH_TAG
from ml_assets.lib.setting_values import redact_url

# MLflow is imported where it is used: importing it takes about a second, and every Dagster process
# imports this module when it loads the code location, most of them never touching the registry.
if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

T = TypeVar("T")


class RegistryError(RuntimeError):
    """The MLflow model registry answered a call with an error.

    Transient as far as ml_assets can tell (a server restarting, a 5xx, a database busy): a step's
    retry policy retries it. It never means "no versions".
    """


@dataclass(frozen=True)
class RegisteredModel:
    """A registered version, as much as downstream steps need to find and load it."""

    name: str
    version: str
    run_id: str
    trained_through: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @classmethod
    def from_version(cls, version: ModelVersion) -> RegisteredModel:
        return cls(
            name=version.name,
            version=str(version.version),
            run_id=version.run_id or "",
            trained_through=version.tags.get(TRAINED_THROUGH_TAG, ""),
        )

    def as_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "trained_through": self.trained_through,
            "uri": self.uri,
        }


class RegistryClient:
    """Reads and writes of one registered model's versions, tags and `champion` alias."""

    def __init__(self, tracking_uri: str, model_name: str) -> None:
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.model_name = model_name

    def _call(self, call: str, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)`, with an MLflow error turned into a `RegistryError` naming `call`."""
        from mlflow.exceptions import MlflowException

        try:
            return function(*args)
        except MlflowException as error:
            raise RegistryError(
                f"MLflow model registry at {redact_url(self.tracking_uri)} (MLFLOW_TRACKING_URI), "
                f"model {self.model_name!r}: {call} failed: {error.error_code}: {error.message}"
            ) from error

    def version(self, version: str) -> RegisteredModel:
        return RegisteredModel.from_version(self._model_version(version))

    def _model_version(self, version: str) -> ModelVersion:
        return self._call(
            f"get_model_version(version={version})",
            self.client.get_model_version,
            self.model_name,
            version,
        )

    def _versions(self) -> list[ModelVersion]:
        """Every version of the model; none when the model is not registered yet."""
        from mlflow.exceptions import MlflowException

        def search() -> list[ModelVersion]:
            try:
                return list(self.client.search_model_versions(f"name='{self.model_name}'"))
            except MlflowException as error:
                if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                    return []
                raise

        return self._call("search_model_versions", search)

    def tags_of(self, version: str) -> dict[str, str]:
        """Every tag of `version`."""
        return dict(self._model_version(version).tags)

    def current_champion(self) -> RegisteredModel | None:
        """The version the `champion` alias points at; None if the model or the alias is unset."""
        from mlflow.exceptions import MlflowException

        # The registered model's aliases, rather than asking for the alias: MLflow answers a
        # missing alias with INVALID_PARAMETER_VALUE, which other mistakes give too.
        def aliases() -> dict[str, str]:
            try:
                return dict(self.client.get_registered_model(self.model_name).aliases)
            except MlflowException as error:
                if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                    return {}
                raise

        version = self._call("get_registered_model", aliases).get(CHAMPION_ALIAS)
        return None if version is None else self.version(str(version))

    def point_alias_at(self, version: str) -> None:
        """Move the `champion` alias to `version`."""
        self._call(
            f"set_registered_model_alias({CHAMPION_ALIAS}={version})",
            self.client.set_registered_model_alias,
            self.model_name,
            CHAMPION_ALIAS,
            version,
        )

    def remove_alias(self) -> None:
        """Remove the `champion` alias: no version is champion."""
        self._call(
            f"delete_registered_model_alias({CHAMPION_ALIAS})",
            self.client.delete_registered_model_alias,
            self.model_name,
            CHAMPION_ALIAS,
        )

    def tag_version(self, version: str, key: str, value: str) -> None:
        """Set tag `key=value` on `version`."""
        self._call(
            f"set_model_version_tag(version={version}, {key}={value})",
            self.client.set_model_version_tag,
            self.model_name,
            version,
            key,
            value,
        )

    def untag_version(self, version: str, key: str) -> None:
        """Remove tag `key` from `version`."""
        self._call(
            f"delete_model_version_tag(version={version}, {key})",
            self.client.delete_model_version_tag,
            self.model_name,
            version,
            key,
        )

    @staticmethod
    def prepare_loading() -> None:
        """Import what `load` needs (MLflow's scikit-learn flavor, scikit-learn and skops take
        seconds) ahead of time: in a step that has to wait anyway, while it waits."""
        import mlflow.sklearn  # noqa: F401
        import skops.io  # noqa: F401

    def load(self, model: RegisteredModel) -> Any:
        """The registered scikit-learn pipeline itself."""
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        return self._call(f"load_model({model.uri})", mlflow.sklearn.load_model, model.uri)
