"""The champion history in the MLflow model registry: which version is champion when, and the
decisions that change it.

Each registered version carries the tag `trained_through` (the last day of its training window).
When the promotion gate of day D promotes a version it gets the tag `promoted_on=D`. The champion
going into day D is the version with the latest `promoted_on` before D: a decision made only with
data from before D, so predictions for D never depend on D's outcomes, whatever order days are
(re)computed in. The `champion` alias always points at the most recent promotion.

A day has one gate decision, its latest: a later gate of day D that fails withdraws what an
earlier gate of D decided (`withdraw_decisions_of`), and one that passes with another challenger
replaces it.

How versions are labelled and decisions recorded: `ml_assets.lib.registry_labels`; the registry
calls themselves: `ml_assets.lib.registry_client`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from ml_assets.lib.registry_client import RegisteredModel, RegistryClient, RegistryError
from ml_assets.lib.registry_labels import (
    CANDIDATE,
    CANDIDATE_ON_TAG,
    CHAMPION,
    CHAMPION_SINCE_TAG,
    CHOSEN_ON_TAG,
    PROMOTED_ON_TAG,
    REJECTED,
    RETIRED,
    RETIRED_ON_TAG,
    STATUS_TAG,
    WITHDRAWN,
    WITHDRAWN_ON_TAG,
    Decision,
    champion_entries,
)

__all__ = ["ModelRegistry", "RegisteredModel", "RegistryError", "Withdrawal"]


@dataclass(frozen=True)
class Withdrawal:
    """What withdrawing one day's gate decisions undid, and the champion after it."""

    promoted: list[str]
    """Versions whose promotion of the day was withdrawn."""
    candidates: list[str]
    """Versions whose candidacy of the day was withdrawn (they no longer await approval)."""
    champion: RegisteredModel | None

    @property
    def versions(self) -> list[str]:
        return sorted({*self.promoted, *self.candidates}, key=int)


class ModelRegistry(RegistryClient):
    """The versions of one registered model, its `champion` alias and the champion's history."""

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

    def withdraw_decisions_of(
        self, day: date, decision: Decision, keep: str | None = None
    ) -> Withdrawal:
        """Undo what an earlier gate of `day` decided, which a later gate of the day reversed.

        Every version (but `keep`) promoted on `day` loses `promoted_on` (so it no longer counts in
        the champion history), and every candidate of `day` stops awaiting approval; both are
        labelled `status=withdrawn`, `withdrawn_on=day`, with `decision`. If a promotion was
        withdrawn, the alias moves back to the recorded champion (none left: the alias is
        removed). A person's choices (`chosen_on`) are theirs and stay.
        """
        key = day.isoformat()
        before = self.recorded_champion()
        versions = [v for v in self._versions() if str(v.version) != keep]
        promoted = sorted(
            (str(v.version) for v in versions if v.tags.get(PROMOTED_ON_TAG) == key), key=int
        )
        candidates = sorted(
            (
                str(v.version)
                for v in versions
                if v.tags.get(CANDIDATE_ON_TAG) == key and v.tags.get(STATUS_TAG) == CANDIDATE
            ),
            key=int,
        )
        for version in promoted:
            self.untag_version(version, PROMOTED_ON_TAG)
        champion = before
        if promoted:
            champion = self.recorded_champion()
            if champion is None:
                self.remove_alias()
            else:
                since = max(
                    entry[0] for entry in champion_entries(self._model_version(champion.version))
                )
                champion = self._move_alias_to_recorded(key, before, since=since)
        withdrawal = Withdrawal(promoted, candidates, champion)
        for version in withdrawal.versions:
            if champion is not None and version == champion.version:
                continue  # still champion by a person's choice
            self.tag_version(version, STATUS_TAG, WITHDRAWN)
            self.tag_version(version, WITHDRAWN_ON_TAG, key)
            self._tag_decision(version, decision)
        return withdrawal

    def _tag_decision(self, version: str, decision: Decision) -> None:
        for key, value in decision.as_tags().items():
            self.tag_version(version, key, value)

    def _move_alias_to_recorded(
        self, day: str, recorded_before: RegisteredModel | None, since: str | None = None
    ) -> RegisteredModel:
        """Point the alias at the recorded champion; relabel it and the champions it replaces
        (the one recorded before the decision, and the one the alias pointed at). A champion that
        changed is labelled champion since `since` (default `day`)."""
        champion = self.recorded_champion()
        if champion is None:
            raise RegistryError(f"model {self.model_name!r}: no champion recorded to point at")
        aliased = self.current_champion()
        self.point_alias_at(champion.version)
        if recorded_before is None or recorded_before.version != champion.version:
            self.tag_version(champion.version, CHAMPION_SINCE_TAG, since or day)
        self.tag_version(champion.version, STATUS_TAG, CHAMPION)
        replaced = {model.version for model in (recorded_before, aliased) if model is not None}
        for version in sorted(replaced - {champion.version}, key=int):
            self.tag_version(version, STATUS_TAG, RETIRED)
            self.tag_version(version, RETIRED_ON_TAG, day)
        return champion
