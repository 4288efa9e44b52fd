"""Run configuration a person can set in the Launchpad (or a YAML file) before launching a run.

Every field has a default that reproduces the scheduled daily behaviour, so an empty config is a
valid config. Choices (model family, feature groups, taxi type) are enums: the Launchpad offers
them and rejects anything else before the run is launched. Numeric ranges are checked when the
step starts, before any data is read or any model is trained, with a message naming the field.
"""

from enum import StrEnum

import dagster as dg
from pydantic import (
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from ml_assets.lib.model_params import FEATURE_GROUPS, MODEL_FAMILIES, ModelParams

_DEFAULTS = ModelParams()


class ModelFamily(StrEnum):
    """The model families `ml_assets.lib.model` knows how to build."""

    hist_gradient_boosting = "hist_gradient_boosting"
    ridge = "ridge"


class FeatureGroup(StrEnum):
    """Groups of input columns; a model uses the union of the groups it is given."""

    zones = "zones"
    distance = "distance"
    time = "time"
    boroughs = "boroughs"


class TaxiType(StrEnum):
    """The TLC fleets whose trip files ml_assets can read."""

    green = "green"
    yellow = "yellow"


# The enums above are what the Launchpad offers; they must list exactly what the model accepts.
assert tuple(family.value for family in ModelFamily) == MODEL_FAMILIES
assert tuple(group.value for group in FeatureGroup) == tuple(FEATURE_GROUPS)


class _FailFastConfig(dg.Config):
    """Config whose invalid values fail the step once, with one readable message.

    An out-of-range value is a mistake in the launch, not a transient error: it is raised as a
    `dg.Failure` that the step's retry policy does not retry.
    """

    @model_validator(mode="wrap")
    @classmethod
    def _fail_without_retries(cls, data: object, handler: ValidatorFunctionWrapHandler) -> object:
        try:
            return handler(data)
        except ValidationError as invalid:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'config'}: {error['msg']}"
                for error in invalid.errors()
            )
            raise dg.Failure(
                description=f"invalid {cls.__name__}: {problems}", allow_retries=False
            ) from invalid


class TrainingConfig(_FailFastConfig):
    """How `duration_model` is trained. The defaults are the model the daily loop trains."""

    family: ModelFamily = Field(
        default=ModelFamily(_DEFAULTS.family).value,
        description=(
            "Model family: `hist_gradient_boosting` (gradient-boosted trees, the default) or "
            "`ridge` (a linear model on one-hot zones, a simple and fast reference)."
        ),
    )
    feature_groups: list[FeatureGroup] = Field(
        default=list(_DEFAULTS.feature_groups),
        min_length=1,
        description=(
            "Which inputs the model may use: `zones` (pickup, drop-off and their pair), "
            "`distance` (trip distance), `time` (hour and day of week, and from the pickup time: "
            "minute of day, US federal holidays, whether it was recorded to the whole minute), "
            "`boroughs` (pickup and drop-off borough). At least one."
        ),
    )
    window_days: int | None = Field(
        default=None,
        ge=1,
        le=366,
        description=(
            "Train on the last N days ending on the partition's day, at most the window the "
            "daily loop loads (ML_ASSETS_TRAINING_WINDOW_DAYS, 28 unless set). Empty: that "
            "whole window."
        ),
    )
    parallel_fits: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description=(
            "How many days' models a run over several days (a backfill) fits at once, each in a "
            "worker process of its own. Empty: one per CPU core of the machine running the step. "
            "1: one day after the other in the step's own process. The models are the same "
            "either way; each fit holds its window in memory."
        ),
    )
    learning_rate: float = Field(
        default=_DEFAULTS.learning_rate,
        gt=0.0,
        le=1.0,
        description="Shrinkage of each boosting step, in (0, 1]. hist_gradient_boosting only.",
    )
    max_iter: int = Field(
        default=_DEFAULTS.max_iter,
        ge=1,
        le=2000,
        description="Number of boosting iterations (trees), 1..2000. hist_gradient_boosting only.",
    )
    max_leaf_nodes: int = Field(
        default=_DEFAULTS.max_leaf_nodes,
        ge=2,
        le=1024,
        description="Leaves per tree, 2..1024. hist_gradient_boosting only.",
    )
    min_samples_leaf: int = Field(
        default=_DEFAULTS.min_samples_leaf,
        ge=1,
        le=10_000,
        description="Fewest trips in a leaf, 1..10000. hist_gradient_boosting only.",
    )
    l2_regularization: float = Field(
        default=_DEFAULTS.l2_regularization,
        ge=0.0,
        le=1000.0,
        description="L2 penalty on leaf values, 0..1000. hist_gradient_boosting only.",
    )
    max_features: float = Field(
        default=_DEFAULTS.max_features,
        gt=0.0,
        le=1.0,
        description=(
            "Share of the inputs each split may choose from, in (0, 1]; 1 uses them all. "
            "hist_gradient_boosting only."
        ),
    )
    ridge_alpha: float = Field(
        default=_DEFAULTS.ridge_alpha,
        gt=0.0,
        le=1_000_000.0,
        description="L2 penalty of the linear model, in (0, 1e6]. ridge only.",
    )
    random_state: int = Field(
        default=_DEFAULTS.random_state,
        ge=0,
        description="Seed for the model's randomness; the same seed and data give the same model.",
    )

    @field_validator("feature_groups")
    @classmethod
    def _no_repeated_groups(cls, groups: list[FeatureGroup]) -> list[FeatureGroup]:
        values = [FeatureGroup(group).value for group in groups]
        repeated = sorted({value for value in values if values.count(value) > 1})
        if repeated:
            raise ValueError(f"feature group(s) {', '.join(repeated)} listed more than once")
        return groups

    def model_params(self) -> ModelParams:
        """The plain model parameters this config stands for."""
        chosen = {FeatureGroup(group).value for group in self.feature_groups}
        return ModelParams(
            family=ModelFamily(self.family).value,
            # In FEATURE_GROUPS' order, so the same choice always gives the same column order.
            feature_groups=tuple(group for group in FEATURE_GROUPS if group in chosen),
            learning_rate=self.learning_rate,
            max_iter=self.max_iter,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            max_features=self.max_features,
            ridge_alpha=self.ridge_alpha,
            random_state=self.random_state,
        )


class IngestionConfig(_FailFastConfig):
    """Which trips `raw_trips` reads, and whether their month files are downloaded again."""

    taxi_type: TaxiType | None = Field(
        default=None,
        description=(
            "TLC fleet to ingest: `green` or `yellow`. Empty: the code location's "
            "ML_ASSETS_TAXI_TYPE (green unless set)."
        ),
    )

    refetch_source: bool = Field(
        default=False,
        description=(
            "Download the run's month files from TLC again even if they are cached (tlc source "
            "only). Use it when TLC replaced a file and the publication sensor is off, or to "
            "check a cached copy against the source. The cached copy is replaced only by a new "
            "file that passed the checks; days whose month file did not change keep their "
            "stored files."
        ),
    )

    def taxi_type_or(self, default: str) -> str:
        return TaxiType(self.taxi_type).value if self.taxi_type is not None else default
