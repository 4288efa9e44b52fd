"""The trip-duration model: scikit-learn pipelines, a naive baseline and metrics. No Dagster here.

What a pipeline reads (the frame of model inputs, derived inputs included) is built by
`ml_assets.lib.model_input`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler, TargetEncoder
from threadpoolctl import threadpool_limits

from ml_assets.lib.features import TARGET
from ml_assets.lib.model_input import model_input

# The plain parameters live in model_params so that config can use them without scikit-learn;
# re-exported here, where the model's users look for them.
from ml_assets.lib.model_params import ALL_FEATURES as ALL_FEATURES
from ml_assets.lib.model_params import CATEGORICAL as CATEGORICAL
from ml_assets.lib.model_params import DERIVED_INPUTS as DERIVED_INPUTS
from ml_assets.lib.model_params import FEATURE_GROUPS as FEATURE_GROUPS
from ml_assets.lib.model_params import MODEL_FAMILIES as MODEL_FAMILIES
from ml_assets.lib.model_params import TREE_ONLY_INPUTS
from ml_assets.lib.model_params import ModelFamily as ModelFamily
from ml_assets.lib.model_params import ModelParams as ModelParams
from ml_assets.lib.model_params import model_inputs as model_inputs

NATIVE_CATEGORICAL = ("PULocationID", "DOLocationID", "pu_borough", "do_borough")
"""Categories the trees split on directly (at most 255 levels each)."""


def build_pipeline(params: ModelParams) -> Pipeline:
    """An unfitted pipeline taking `model_input(features, params.features)` (or any frame that has
    at least those columns: `model_input(features, ALL_FEATURES)` serves every model)."""
    inputs = params.inputs
    if params.family == "ridge":
        categorical = [column for column in inputs if column in CATEGORICAL]
        numeric = [
            column
            for column in inputs
            if column not in CATEGORICAL and column not in TREE_ONLY_INPUTS
        ]
        encode = ColumnTransformer(
            [
                ("onehot", OneHotEncoder(handle_unknown="ignore"), categorical),
                ("scale", StandardScaler(), numeric),
            ]
        )
        return Pipeline([("encode", encode), ("model", Ridge(alpha=params.ridge_alpha))])

    def unknown_is_missing() -> OrdinalEncoder:
        return OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=np.nan, dtype=np.float64
        )

    zones = [c for c in ("PULocationID", "DOLocationID") if c in inputs]
    boroughs = [c for c in ("pu_borough", "do_borough") if c in inputs]
    # Too many levels to split on directly (~13k zone pairs): a cross-fitted target encoding gives
    # each level its typical duration without leaking the target of the row being encoded.
    encoded = [c for c in inputs if c in CATEGORICAL and c not in NATIVE_CATEGORICAL]
    numeric = [c for c in inputs if c not in CATEGORICAL]
    steps: list[tuple[str, object, list[str]]] = []
    if zones:
        # Native categorical splits allow at most 255 levels: pool the rarest zones.
        zone_encoder = unknown_is_missing().set_params(max_categories=254)
        steps.append(("zone", zone_encoder, zones))
    if boroughs:
        steps.append(("borough", unknown_is_missing(), boroughs))
    if encoded:
        target_encoder = TargetEncoder(
            target_type="continuous",
            cv=KFold(5, shuffle=True, random_state=params.random_state),
        )
        steps.append(("pair", target_encoder, encoded))
    steps.append(("numeric", "passthrough", numeric))
    encode = ColumnTransformer(steps, remainder="drop", verbose_feature_names_out=False)
    categorical_mask = [True] * (len(zones) + len(boroughs)) + [False] * (
        len(encoded) + len(numeric)
    )
    model = HistGradientBoostingRegressor(
        learning_rate=params.learning_rate,
        max_iter=params.max_iter,
        max_leaf_nodes=params.max_leaf_nodes,
        min_samples_leaf=params.min_samples_leaf,
        l2_regularization=params.l2_regularization,
        max_features=params.max_features,
        categorical_features=categorical_mask if any(categorical_mask) else None,
        early_stopping=False,
        random_state=params.random_state,
    )
    return Pipeline([("encode", encode), ("model", model)])


@dataclass
class TrainedModel:
    pipeline: Pipeline
    params: ModelParams
    fit_seconds: float
    train_rows: int
    feature_names: list[str] = field(default_factory=list)

    def predict(self, features: pl.DataFrame) -> np.ndarray:
        return self.pipeline.predict(model_input(features, self.params.features))


def train_model(features: pl.DataFrame, params: ModelParams) -> TrainedModel:
    """Fit `params`' pipeline on rows of `trip_features`."""
    if features.height == 0:
        raise ValueError("cannot train on zero rows of trip_features")
    pipeline = build_pipeline(params)
    # A copy that owns its memory (the model input's columns are views of polars' memory, which
    # is handed back to the system only a second or two after it is freed): freed once encoded,
    # it is returned at once, before the trees copy the encoded matrix, which is the fit's peak.
    inputs = model_input(features, params.features).copy()
    target = features[TARGET].to_numpy()
    started = time.perf_counter()
    with threadpool_limits(params.n_threads):
        # The steps are fitted as `Pipeline.fit` fits them, but `Pipeline.fit` would keep the
        # input frame (0.6 GB at 10 million trips) until the trees are fitted.
        encoded = pipeline[:-1].fit_transform(inputs, target)
        del inputs
        pipeline[-1].fit(encoded, target)
    return TrainedModel(
        pipeline=pipeline,
        params=params,
        fit_seconds=time.perf_counter() - started,
        train_rows=features.height,
        feature_names=params.features,
    )


def regression_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    errors = np.asarray(predicted, dtype=float) - np.asarray(actual, dtype=float)
    return {
        "rmse": float(math.sqrt(np.mean(errors**2))),
        "mae": float(np.mean(np.abs(errors))),
    }


class ZonePairBaseline:
    """Predicts the mean training duration of the trip's zone pair.

    Falls back to the pickup zone's mean, then to the overall mean, for pairs never seen in
    training. It is the bar a real model has to clear.
    """

    def __init__(self, training: pl.DataFrame) -> None:
        self.overall = float(training[TARGET].mean())  # type: ignore[arg-type]
        self.by_pair = training.group_by("PU_DO").agg(pl.col(TARGET).mean().alias("pair_mean"))
        self.by_pickup = training.group_by("PULocationID").agg(
            pl.col(TARGET).mean().alias("pickup_mean")
        )

    def predict(self, features: pl.DataFrame) -> np.ndarray:
        joined = (
            features.select("PU_DO", "PULocationID")
            .with_row_index("row")
            .join(self.by_pair, on="PU_DO", how="left")
            .join(self.by_pickup, on="PULocationID", how="left")
            .sort("row")
        )
        return (
            joined.select(
                pl.coalesce("pair_mean", "pickup_mean", pl.lit(self.overall)).alias("baseline")
            )
            .to_series()
            .to_numpy()
        )


def feature_importances(model: TrainedModel, top: int = 10) -> dict[str, float]:
    """Share of importance per input column: |coefficients| for ridge, split gains for trees."""
    estimator = model.pipeline.named_steps["model"]
    if isinstance(estimator, Ridge):
        encode = model.pipeline.named_steps["encode"]
        weights = np.abs(estimator.coef_)
        totals: dict[str, float] = {}
        for name, transformer, columns in encode.transformers_:
            if name == "remainder" or len(columns) == 0:
                continue  # nothing was fitted for an empty column group
            sizes = (
                [len(levels) for levels in transformer.categories_]
                if isinstance(transformer, OneHotEncoder)
                else [1] * len(columns)
            )
            offset = encode.output_indices_[name].start
            for column, size in zip(columns, sizes, strict=True):
                totals[column] = float(weights[offset : offset + size].sum())
                offset += size
    else:
        totals = _tree_split_gains(estimator, model.pipeline.named_steps["encode"])
    ranked = sorted(totals.items(), key=lambda item: item[1], reverse=True)[:top]
    total = sum(value for _, value in ranked) or 1.0
    return {name: round(value / total, 4) for name, value in ranked}


def _tree_split_gains(
    estimator: HistGradientBoostingRegressor, encode: ColumnTransformer
) -> dict[str, float]:
    names = list(encode.get_feature_names_out())
    counts = np.zeros(len(names))
    for iteration in estimator._predictors:
        for predictor in iteration:
            nodes = predictor.nodes
            split = nodes[~nodes["is_leaf"].astype(bool)]
            np.add.at(counts, split["feature_idx"], split["gain"])
    return {name: float(count) for name, count in zip(names, counts, strict=True)}
