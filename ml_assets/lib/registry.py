"""The MLflow model registry as ml_assets uses it: versions, the champion alias and its history.

Each registered version carries the tag `trained_through` (the last day of its training window).
When an evaluation of day D promotes a version it gets the tag `promoted_on=D`. The champion going
into day D is the version with the latest `promoted_on` before D: a decision made only with data
from before D, so predictions for D never depend on D's outcomes, whatever order days are
(re)computed in. The `champion` alias always points at the most recent promotion.

A registry that answers a call with an error (a restarting server, a 5xx, a permission error)
raises `RegistryError`, naming the registry and the call: an error must never read as "no
champion yet", which would promote a challenger without comparing it with anything. Only "no such
registered model" means that no version exists.

How versions are labelled and decisions recorded: `ml_assets.lib.registry_labels`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, TypeVar

from ml_assets.lib.registry_labels import (
    CANDIDATE,
    CANDIDATE_ON_TAG,
    CHAMPION,
    CHAMPION_ALIAS,
    CHAMPION_SINCE_TAG,
    CHOSEN_ON_TAG,
    PROMOTED_ON_TAG,
    REJECTED,
    RETIRED,
    RETIRED_ON_TAG,
    STATUS_TAG,
    TRAINED_THROUGH_TAG,
    Decision,
    champion_entries,
)
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


class ModelRegistry:
    """The versions of one registered model and its `champion` alias, in one MLflow registry."""

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
        return RegisteredModel.from_version(
            self._call(
                f"get_model_version(version={version})",
                self.client.get_model_version,
                self.model_name,
                version,
            )
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

    def champion_going_into(self, day: date) -> RegisteredModel | None:
        """The champion chosen before `day` (see the module doc), or None if none was."""
        return self._latest_champion(lambda decided: decided < day.isoformat())

    def recorded_champion(self) -> RegisteredModel | None:
        """The champion of the latest decision recorded: where the `champion` alias belongs."""
        return self._latest_champion(lambda decided: True)

    def _latest_champion(self, include: Callable[[str], bool]) -> RegisteredModel | None:
        entries = [
            (entry, version)
            for version in self._versions()
            for entry in champion_entries(version)
            if include(entry[0])
        ]
        if not entries:
            return None
        _, latest = max(entries, key=lambda item: (item[0], int(item[1].version)))
        return RegisteredModel.from_version(latest)

    def latest_decision_day(self) -> str | None:
        """The latest decision day recorded in the registry (None before any champion)."""
        days = [entry[0] for version in self._versions() for entry in champion_entries(version)]
        return max(days, default=None)

    def versions_with_status(self, status: str) -> list[RegisteredModel]:
        """The versions labelled `status=<status>`, oldest first."""
        found = [v for v in self._versions() if v.tags.get(STATUS_TAG) == status]
        return [
            RegisteredModel.from_version(v) for v in sorted(found, key=lambda v: int(v.version))
        ]

    def tags_of(self, version: str) -> dict[str, str]:
        """Every tag of `version`."""
        return dict(
            self._call(
                f"get_model_version(version={version})",
                self.client.get_model_version,
                self.model_name,
                version,
            ).tags
        )

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

    def promote(
        self, model: RegisteredModel, day: date, decision: Decision | None = None
    ) -> RegisteredModel:
        """Record that `model` won day `day`'s evaluation and move the alias to the latest winner."""
        previous = self.recorded_champion()
        self.tag_version(model.version, PROMOTED_ON_TAG, day.isoformat())
        if decision is not None:
            self._tag_decision(model.version, decision)
        return self._move_alias_to_recorded(day.isoformat(), previous)

    def choose(self, version: str, decision: Decision) -> RegisteredModel:
        """Make `version` champion by a person's (or an outside) `decision` of `decision.day`.

        Appends `decision.day/decision.at` to the version's `chosen_on` history, records the
        decision in its tags and moves the alias to the recorded champion (this version).
        """
        previous = self.recorded_champion()
        tags = self.tags_of(version)
        history = [entry for entry in tags.get(CHOSEN_ON_TAG, "").split(",") if entry]
        entry = f"{decision.day}/{decision.at}"
        self.tag_version(version, CHOSEN_ON_TAG, ",".join([*history, entry]))
        self._tag_decision(version, decision)
        return self._move_alias_to_recorded(decision.day, previous)

    def mark_candidate(self, model: RegisteredModel, day: date, decision: Decision) -> None:
        """Label `model` a candidate that passed day `day`'s gate and waits for a person."""
        self.tag_version(model.version, STATUS_TAG, CANDIDATE)
        self.tag_version(model.version, CANDIDATE_ON_TAG, day.isoformat())
        self._tag_decision(model.version, decision)

    def reject(self, version: str, decision: Decision) -> None:
        """Label `version` rejected by a person, with the decision."""
        self.tag_version(version, STATUS_TAG, REJECTED)
        self._tag_decision(version, decision)

    def _tag_decision(self, version: str, decision: Decision) -> None:
        for key, value in decision.as_tags().items():
            self.tag_version(version, key, value)

    def _move_alias_to_recorded(
        self, day: str, recorded_before: RegisteredModel | None
    ) -> RegisteredModel:
        """Point the alias at the recorded champion; relabel it and the champions it replaces
        (the one recorded before the decision, and the one the alias pointed at)."""
        champion = self.recorded_champion()
        if champion is None:
            raise RegistryError(f"model {self.model_name!r}: no champion recorded to point at")
        aliased = self.current_champion()
        self._call(
            f"set_registered_model_alias({CHAMPION_ALIAS}={champion.version})",
            self.client.set_registered_model_alias,
            self.model_name,
            CHAMPION_ALIAS,
            champion.version,
        )
        if recorded_before is None or recorded_before.version != champion.version:
            self.tag_version(champion.version, CHAMPION_SINCE_TAG, day)
        self.tag_version(champion.version, STATUS_TAG, CHAMPION)
        replaced = {model.version for model in (recorded_before, aliased) if model is not None}
        for version in sorted(replaced - {champion.version}, key=int):
            self.tag_version(version, STATUS_TAG, RETIRED)
            self.tag_version(version, RETIRED_ON_TAG, day)
        return champion

    def withdraw(self, model: RegisteredModel, day: date) -> None:
        """Undo a promotion of `model` on `day` that a re-run of that day's evaluation reversed."""
        version = self._call(
            f"get_model_version(version={model.version})",
            self.client.get_model_version,
            self.model_name,
            model.version,
        )
        if version.tags.get(PROMOTED_ON_TAG) == day.isoformat():
            self._call(
                f"delete_model_version_tag(version={model.version}, {PROMOTED_ON_TAG})",
                self.client.delete_model_version_tag,
                self.model_name,
                model.version,
                PROMOTED_ON_TAG,
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

    def load(self, model: RegisteredModel) -> Any:
        """The registered scikit-learn pipeline itself."""
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        return self._call(f"load_model({model.uri})", mlflow.sklearn.load_model, model.uri)
