"""How registered versions are labelled, so a person can read the registry after a year of daily
training (every daily model is a version: its evaluation, the day after, loads it by version):

- `trained_through=D` on every version: the last day of its training window.
- `status`: absent on a model that never passed the promotion gate (most of them); `candidate`
  (passed the gate, waits for a person under `manual` approval), `champion` (the one the alias
  points at), `retired` (was champion, replaced), `rejected` (a person rejected it), `withdrawn`
  (a later gate of the day it was promoted or made a candidate on failed).
- `candidate_on=D`: the day whose evaluation it passed the gate on; `champion_since=D`: the
  decision day of the latest time it became champion; `retired_on=D`: when it was replaced;
  `withdrawn_on=D`: the day whose decision was withdrawn.
- The last decision about the version: `decision` (`promoted`, `candidate`, `approved`,
  `rejected`, `rolled_back`, `moved_outside_dagster`, `withdrawn`), `decided_by`, `decided_at`
  (UTC), `decision_reason`, `decision_metrics` (JSON: the RMSEs it was made on). Every decision
  is also an observation of the `champion_model` asset in Dagster, which keeps the full history.

The champion history that predictions follow is kept in two tags: `promoted_on=D` (the gate of
day D's evaluation promoted it automatically) and `chosen_on`, a comma-separated list of
`D/<UTC time>` entries (a person approved it or rolled back to it, or the alias was moved to it
outside Dagster, when day D was the latest evaluated day). The champion going into day X is the
version of the latest such entry with D before X; on the same day a person's choice wins over the
automatic promotion, and later choices over earlier ones. A withdrawn promotion loses its
`promoted_on`: it never counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

CHAMPION_ALIAS = "champion"
TRAINED_THROUGH_TAG = "trained_through"
PROMOTED_ON_TAG = "promoted_on"
CHOSEN_ON_TAG = "chosen_on"
STATUS_TAG = "status"
CANDIDATE_ON_TAG = "candidate_on"
CHAMPION_SINCE_TAG = "champion_since"
RETIRED_ON_TAG = "retired_on"
WITHDRAWN_ON_TAG = "withdrawn_on"

CANDIDATE = "candidate"
CHAMPION = "champion"
RETIRED = "retired"
REJECTED = "rejected"
WITHDRAWN = "withdrawn"


def utc_now() -> str:
    """The current time, UTC, to the second, as decisions record it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Decision:
    """One decision about a version: who made it, when, why, and the numbers it was made on.

    `day` is the decision day: the latest day whose data the decision could see. A version made
    champion by a decision of day D serves predictions from day D+1 on.
    """

    kind: str
    """`promoted`, `candidate`, `approved`, `rejected`, `rolled_back`, `moved_outside_dagster` or
    `withdrawn`."""
    day: str
    by: str
    reason: str
    metrics: dict[str, Any] = field(default_factory=dict)
    at: str = field(default_factory=utc_now)

    def as_tags(self) -> dict[str, str]:
        """The version tags recording this decision (the latest one on a version wins)."""
        return {
            "decision": self.kind,
            "decided_by": self.by,
            "decided_at": self.at,
            # MLflow limits a tag value to 5000 characters.
            "decision_reason": self.reason[:4000],
            "decision_metrics": json.dumps(self.metrics, sort_keys=True),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "decision": self.kind,
            "decision_day": self.day,
            "decided_by": self.by,
            "decided_at": self.at,
            "reason": self.reason,
            "metrics": self.metrics,
        }


def champion_entries(version: ModelVersion) -> list[tuple[str, int, str]]:
    """When `version` became champion: (decision day, 0 for the gate / 1 for a person, time)."""
    entries = []
    if PROMOTED_ON_TAG in version.tags:
        entries.append((version.tags[PROMOTED_ON_TAG], 0, ""))
    for entry in filter(None, version.tags.get(CHOSEN_ON_TAG, "").split(",")):
        day, _, at = entry.partition("/")
        entries.append((day, 1, at))
    return entries
