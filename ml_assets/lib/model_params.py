"""Plain model parameters: what defines a model, without importing scikit-learn or pandas.

Split from `ml_assets.lib.model` because run config (`ml_assets.config`) needs these when the code
location loads, in every Dagster process, while scikit-learn is needed only by steps that train or
score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

ModelFamily = Literal["hist_gradient_boosting", "ridge"]
MODEL_FAMILIES: tuple[ModelFamily, ...] = ("hist_gradient_boosting", "ridge")

FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "zones": ("PULocationID", "DOLocationID", "PU_DO"),
    "distance": ("trip_distance",),
    "time": ("pickup_hour", "pickup_dow", "pickup_datetime"),
    "boroughs": ("pu_borough", "do_borough"),
}
"""`trip_features` columns by group; a model uses the union of the groups it is configured with."""

ALL_FEATURES: tuple[str, ...] = tuple(c for group in FEATURE_GROUPS.values() for c in group)

DERIVED_INPUTS: dict[str, tuple[str, ...]] = {
    "pickup_minute": ("pickup_datetime",),
    "pickup_holiday": ("pickup_datetime",),
    "pickup_whole_minute": ("pickup_datetime",),
    "borough_pair": ("pu_borough", "do_borough"),
    "PU_whole_minute": ("PULocationID", "pickup_datetime"),
    "pickup_days": ("pickup_datetime",),
}
"""Model inputs derived from `trip_features` columns (`ml_assets.lib.model_input`), with
the columns each needs; a model gets every one whose columns it uses.

- `pickup_minute`: minute of the day (0..1439), finer than the hour.
- `pickup_holiday`: 1 on US federal holidays (pandas' calendar), when traffic is light.
- `pickup_whole_minute`: 1 when the pickup time has no seconds. About half of green trips are
  recorded to the whole minute (by a dispatch system, not the street-hail meter), and those trips
  are longer at the same distance.
- `borough_pair`, `PU_whole_minute`: pickup and drop-off borough; pickup zone and how the trip was
  recorded. Target-encoded, like `PU_DO`.
- `pickup_days`: the pickup time in days since 1970, for tree models only (`TREE_ONLY_INPUTS`).
  Durations drift with the season, the weather and the traffic (February 2021 trips were a minute
  longer than January's at the same distance); trees learn the training window's level over time
  and, as trees do not extrapolate, score later trips at the window's most recent level.
"""

TREE_ONLY_INPUTS = frozenset({"pickup_days"})
"""Inputs a linear model leaves out: it would extrapolate their trend past the training window."""

RAW_ONLY = frozenset({"pickup_datetime"})
"""Feature columns a pipeline never sees as such: only what is derived from them."""

CATEGORICAL = frozenset(
    {"PULocationID", "DOLocationID", "PU_DO", "pu_borough", "do_borough"}
    | {"borough_pair", "PU_whole_minute"}
)
"""Model inputs handed to the pipeline as strings."""


def model_inputs(features: Sequence[str]) -> list[str]:
    """The columns a pipeline takes for a model using the `trip_features` columns `features`."""
    present = set(features)
    derived = [name for name, needs in DERIVED_INPUTS.items() if present.issuperset(needs)]
    return [column for column in features if column not in RAW_ONLY] + derived


@dataclass(frozen=True)
class ModelParams:
    """Everything that defines a model before it sees data.

    The defaults were chosen on the course protocol (train January 2021, validate February 2021,
    trips of 1..60 minutes with the project's cleaning) and checked on a month they were not tuned
    on (train February, validate March): RMSE 5.113 on the course protocol (7.76 for the course's
    linear regression; 5.214 before `pickup_days`, 5.352 for the first defaults: 150 iterations at
    0.1, every input at every split, no derived inputs) and 4.931 from February to March (4.925
    before `pickup_days`, 5.068 for the first defaults), in about 3 s of CPU on one idle core.
    On the daily loop (28-day window, the next day scored, eight Fridays of February and March)
    the mean RMSE is 5.073 (5.147 before `pickup_days`).
    Most of the gain is from the derived inputs (`DERIVED_INPUTS`: February's trips ran a minute
    longer than January's, which `pickup_days` lets the model follow) and from drawing a third of
    the inputs per split.
    """

    family: ModelFamily = "hist_gradient_boosting"
    feature_groups: tuple[str, ...] = ("zones", "distance", "time", "boroughs")
    learning_rate: float = 0.08
    max_iter: int = 250
    max_leaf_nodes: int = 63
    min_samples_leaf: int = 20
    l2_regularization: float = 0.0
    max_features: float = 0.35
    """Share of the inputs each split may choose from (drawn per split): decorrelates the trees,
    which helps most on months unlike the training month, and makes each tree cheaper."""
    ridge_alpha: float = 1.0
    random_state: int = 0
    n_threads: int = 1
    """Threads for fitting. One is reproducible and, on a shared 2-core machine, often faster."""

    def __post_init__(self) -> None:
        if self.family not in MODEL_FAMILIES:
            raise ValueError(f"model family {self.family!r} is not one of {MODEL_FAMILIES}")
        unknown = sorted(set(self.feature_groups) - FEATURE_GROUPS.keys())
        if unknown or not self.feature_groups:
            raise ValueError(
                f"feature groups {unknown or '(none)'} invalid: choose from {sorted(FEATURE_GROUPS)}"
            )
        if not 0.0 < self.max_features <= 1.0:
            raise ValueError(f"max_features {self.max_features} invalid: a share in (0, 1]")

    @property
    def features(self) -> list[str]:
        """The `trip_features` columns the model reads."""
        return [
            column
            for group in FEATURE_GROUPS
            if group in self.feature_groups
            for column in FEATURE_GROUPS[group]
        ]

    @property
    def inputs(self) -> list[str]:
        """The columns its pipeline takes: `model_input(features, self.features)`'s columns."""
        return model_inputs(self.features)

    def as_mlflow_params(self) -> dict[str, str]:
        params = asdict(self)
        params["feature_groups"] = ",".join(self.feature_groups)
        tree_only = (
            "learning_rate",
            "max_iter",
            "max_leaf_nodes",
            "min_samples_leaf",
            "max_features",
        )
        for key in (
            (*tree_only, "l2_regularization") if self.family == "ridge" else ("ridge_alpha",)
        ):
            params.pop(key)
        return {key: str(value) for key, value in params.items()}
