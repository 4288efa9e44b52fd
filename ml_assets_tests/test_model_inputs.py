"""The inputs a model derives from `trip_features` columns, and what the logged pipeline needs."""

from datetime import datetime

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import skops.io

from ml_assets.lib.features import FEATURE_SCHEMA
from ml_assets.lib.model import (
    ALL_FEATURES,
    ModelParams,
    build_pipeline,
    model_inputs,
    train_model,
)
from ml_assets.lib.model_input import model_input
from ml_assets.lib.model_params import CATEGORICAL
from ml_assets_tests.test_model import features_frame

OLD_INPUTS = [
    "PULocationID",
    "DOLocationID",
    "PU_DO",
    "trip_distance",
    "pickup_hour",
    "pickup_dow",
    "pu_borough",
    "do_borough",
]
"""The inputs of the models registered before the derived inputs existed."""


def test_derived_inputs_of_hand_made_trips() -> None:
    pickups = [
        datetime(2021, 1, 18, 7, 45, 0),  # Martin Luther King Jr. Day, whole minute
        datetime(2021, 1, 19, 23, 59, 12),
        datetime(2021, 2, 15, 0, 0, 0, 500),  # Presidents' Day, not a whole minute
    ]
    frame = (
        features_frame(3)
        .with_columns(
            pl.Series("pickup_datetime", pickups, dtype=pl.Datetime("us")),
            pl.Series("PULocationID", [7, 8, 9], dtype=pl.Int32),
            pl.Series("pu_borough", ["Queens", None, "Bronx"], dtype=pl.String),
            pl.Series("do_borough", ["Manhattan", "Queens", "Bronx"], dtype=pl.String),
        )
        .select([pl.col(name).cast(dtype) for name, dtype in FEATURE_SCHEMA.items()])
    )

    inputs = model_input(frame, ALL_FEATURES)

    assert list(inputs.columns) == model_inputs(ALL_FEATURES)
    assert "pickup_datetime" not in inputs.columns  # only what is derived from it
    assert inputs["pickup_minute"].tolist() == [465.0, 1439.0, 0.0]
    assert inputs["pickup_holiday"].tolist() == [1.0, 0.0, 1.0]
    assert inputs["pickup_whole_minute"].tolist() == [1.0, 0.0, 0.0]
    assert inputs["borough_pair"].tolist() == ["Queens_Manhattan", "None", "Bronx_Bronx"]
    assert inputs["PU_whole_minute"].tolist() == ["7_1", "8_0", "9_0"]
    # 2021-01-18 is day 18,645 since 1970; 7:45 is 0.3229 of a day.
    assert inputs["pickup_days"].round(4).tolist() == [18645.3229, 18646.9994, 18673.0]


def test_zone_categories_are_their_ids_and_a_missing_zone_or_time_is_none() -> None:
    frame = (
        features_frame(4)
        .with_columns(
            pl.Series("PULocationID", [1, 265, None, 0], dtype=pl.Int32),
            pl.Series("DOLocationID", [265, None, 7, 266], dtype=pl.Int32),
            pl.Series(
                "pickup_datetime",
                [datetime(2021, 1, 5, 7, 30), datetime(2021, 1, 5, 7, 30, 1), None, None],
                dtype=pl.Datetime("us"),
            ),
        )
        .select([pl.col(name).cast(dtype) for name, dtype in FEATURE_SCHEMA.items()])
    )

    inputs = model_input(frame, ALL_FEATURES)

    # Zones outside TLC's 1..265 never reach trip_features (its cleaning rules drop them).
    assert inputs["PULocationID"].tolist() == ["1", "265", "None", "None"]
    assert inputs["DOLocationID"].tolist() == ["265", "None", "7", "None"]
    assert inputs["PU_whole_minute"].tolist() == ["1_1", "265_0", "None", "None"]
    assert all(inputs[name].dtype == "category" for name in ("PULocationID", "PU_whole_minute"))


def test_a_whole_minute_is_exact_to_the_microsecond_on_either_side_of_1970() -> None:
    pickups = [
        datetime(1969, 12, 31, 23, 59, 0),
        datetime(1969, 12, 31, 23, 59, 30),
        datetime(2021, 1, 5, 7, 30, 0, 1),
        datetime(2021, 1, 5, 7, 31, 0),
    ]
    frame = (
        features_frame(4)
        .with_columns(pl.Series("pickup_datetime", pickups, dtype=pl.Datetime("us")))
        .select([pl.col(name).cast(dtype) for name, dtype in FEATURE_SCHEMA.items()])
    )

    inputs = model_input(frame, ALL_FEATURES)

    assert inputs["pickup_whole_minute"].tolist() == [1.0, 0.0, 0.0, 1.0]
    zones = frame["PULocationID"].cast(pl.String).to_list()
    assert inputs["PU_whole_minute"].tolist() == [
        f"{zones[0]}_1",
        f"{zones[1]}_0",
        f"{zones[2]}_0",
        f"{zones[3]}_1",
    ]


def test_each_model_gets_the_derived_inputs_of_its_groups() -> None:
    assert ModelParams(feature_groups=("zones", "distance")).inputs == [
        "PULocationID",
        "DOLocationID",
        "PU_DO",
        "trip_distance",
    ]
    assert ModelParams(feature_groups=("time",)).inputs == [
        "pickup_hour",
        "pickup_dow",
        "pickup_minute",
        "pickup_holiday",
        "pickup_whole_minute",
        "pickup_days",
    ]
    assert set(ModelParams().inputs) == set(OLD_INPUTS) | {
        "pickup_minute",
        "pickup_holiday",
        "pickup_whole_minute",
        "borough_pair",
        "PU_whole_minute",
        "pickup_days",
    }


def test_max_features_must_be_a_share() -> None:
    with pytest.raises(ValueError, match=r"max_features 0.0 invalid: a share in \(0, 1\]"):
        ModelParams(max_features=0.0)
    assert "max_features" not in ModelParams(family="ridge").as_mlflow_params()
    assert ModelParams().as_mlflow_params()["max_features"] == "0.35"


@pytest.mark.parametrize("family", ["hist_gradient_boosting", "ridge"])
def test_categories_reach_the_pipeline_as_pandas_categories_of_strings(family: str) -> None:
    """Category columns are codes plus each distinct string once (a row of Python strings each
    would take six times the memory), and a model trained on plain strings, as the champions
    registered before were, scores them exactly as it scores strings."""
    train, scored = features_frame(300, seed=3), features_frame(60, seed=4)
    params = ModelParams(family=family, max_iter=10)  # type: ignore[arg-type]
    inputs, scored_inputs = (
        model_input(train, params.features),
        model_input(scored, params.features),
    )
    categorical = [name for name in inputs.columns if name in CATEGORICAL]
    as_strings = {name: object for name in categorical}

    assert categorical and all(inputs[name].dtype == "category" for name in categorical)
    assert inputs["PU_DO"].astype(str).tolist() == train["PU_DO"].to_list()
    on_categories = build_pipeline(params).fit(inputs, train["duration_min"].to_numpy())
    on_strings = build_pipeline(params).fit(
        inputs.astype(as_strings), train["duration_min"].to_numpy()
    )
    expected = on_strings.predict(scored_inputs.astype(as_strings))
    np.testing.assert_array_equal(on_strings.predict(scored_inputs), expected)
    np.testing.assert_array_equal(on_categories.predict(scored_inputs), expected)


def test_model_inputs_hold_no_memory_of_pyarrows_pool() -> None:
    """pyarrow's pool keeps what is freed: memory taken from it for the model input would stay
    taken through the fit that follows (0.5 GB at 10 million trips)."""
    features = features_frame(2000)
    before = pa.total_allocated_bytes()

    inputs = model_input(features, ALL_FEATURES)

    assert pa.total_allocated_bytes() == before
    assert inputs["trip_distance"].tolist() == features["trip_distance"].to_list()


@pytest.mark.parametrize("family", ["hist_gradient_boosting", "ridge"])
def test_the_logged_pipeline_is_made_of_scikit_learn_alone(family: str) -> None:
    """Served models need no ml_assets code: only scikit-learn and numpy types to trust."""
    model = train_model(features_frame(300), ModelParams(family=family, max_iter=10))  # type: ignore[arg-type]

    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(model.pipeline))

    assert not [name for name in untrusted if name.startswith("ml_assets")]


@pytest.mark.slow
def test_a_model_registered_before_the_derived_inputs_scores_todays_frame() -> None:
    """The champion may predate this code: it picks its own columns out of the serving frame."""
    train, scored = features_frame(400, seed=1), features_frame(50, seed=2)
    old_params = ModelParams(max_iter=20)
    old = build_pipeline(old_params)
    # The old pipeline: fitted on the old inputs only, as models logged before were.
    old.set_params(
        encode__transformers=[
            (name, step, [c for c in columns if c in OLD_INPUTS])
            for name, step, columns in old.named_steps["encode"].transformers
        ],
        # Zones and boroughs split on natively; PU_DO encoded; distance, hour and weekday.
        model__categorical_features=[True] * 4 + [False] * 4,
        model__max_features=1.0,
    )
    old.fit(model_input(train, OLD_INPUTS)[OLD_INPUTS], train["duration_min"].to_numpy())

    predicted = old.predict(model_input(scored, ALL_FEATURES))

    assert predicted.shape == (50,) and np.isfinite(predicted).all()


def test_a_linear_model_leaves_the_pickup_time_out() -> None:
    """Ridge would extrapolate a trend in `pickup_days` past its window; trees use its latest level."""
    frame = model_input(features_frame(300), ALL_FEATURES)
    ridge = train_model(features_frame(300), ModelParams(family="ridge"))
    trees = train_model(features_frame(300), ModelParams(max_iter=10))

    ridge_columns = ridge.pipeline.named_steps["encode"].get_feature_names_out()
    tree_columns = trees.pipeline.named_steps["encode"].get_feature_names_out()
    assert "pickup_days" in frame.columns
    assert not [name for name in ridge_columns if "pickup_days" in name]
    assert "pickup_days" in tree_columns
