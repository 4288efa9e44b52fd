"""The model pipeline, the zone-pair baseline and the metrics, on small hand-made data."""

import math
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from ml_assets.lib.day_model import fit_day_model, training_rows, training_window
from ml_assets.lib.errors import NotEnoughTripsError
from ml_assets.lib.features import FEATURE_SCHEMA
from ml_assets.lib.model import (
    ALL_FEATURES,
    FEATURE_GROUPS,
    ModelParams,
    ZonePairBaseline,
    build_pipeline,
    feature_importances,
    model_inputs,
    regression_metrics,
    train_model,
)
from ml_assets.lib.model_input import model_input


def features_frame(rows: int = 600, seed: int = 0) -> pl.DataFrame:
    """Trips whose duration is 2 minutes plus 3 minutes per mile, exactly."""
    rng = np.random.default_rng(seed)
    pickup_zone = rng.choice([10, 20, 30], size=rows)
    dropoff_zone = rng.choice([10, 20, 30], size=rows)
    distance = rng.uniform(0.0, 10.0, size=rows).round(2)
    start = datetime(2021, 1, 4)
    frame = pl.DataFrame(
        {
            "trip_key": [f"t{n}" for n in range(rows)],
            "pickup_datetime": [
                start + timedelta(minutes=int(m)) for m in rng.integers(0, 2880, rows)
            ],
            "PULocationID": pickup_zone,
            "DOLocationID": dropoff_zone,
            "PU_DO": [f"{p}_{d}" for p, d in zip(pickup_zone, dropoff_zone, strict=True)],
            "trip_distance": distance,
            "pickup_hour": rng.integers(0, 24, rows),
            "pickup_dow": rng.integers(1, 8, rows),
            "pu_borough": np.where(pickup_zone == 10, "Queens", "Manhattan"),
            "do_borough": np.where(dropoff_zone == 10, "Queens", "Manhattan"),
            "duration_min": 2.0 + 3.0 * distance,
        }
    )
    return frame.select([pl.col(name).cast(dtype) for name, dtype in FEATURE_SCHEMA.items()])


def test_regression_metrics_by_hand() -> None:
    metrics = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 5.0]))

    assert metrics["rmse"] == pytest.approx(math.sqrt(5 / 3))
    assert metrics["mae"] == pytest.approx(1.0)


def test_perfect_predictions_score_zero() -> None:
    assert regression_metrics(np.array([4.0, 5.0]), np.array([4.0, 5.0])) == {
        "rmse": 0.0,
        "mae": 0.0,
    }


def test_baseline_uses_the_pair_then_the_pickup_zone_then_the_overall_mean() -> None:
    training = pl.DataFrame(
        {
            "PU_DO": ["1_2", "1_2", "1_3", "4_4"],
            "PULocationID": [1, 1, 1, 4],
            "duration_min": [10.0, 20.0, 30.0, 40.0],
        }
    )
    scored = pl.DataFrame(
        {"PU_DO": ["4_4", "1_9", "1_2", "7_7"], "PULocationID": [4, 1, 1, 7]},
        schema={"PU_DO": pl.String, "PULocationID": pl.Int64},
    )

    predicted = ZonePairBaseline(training).predict(scored)

    # 4_4: its pair; 1_9: unseen pair, pickup 1 averages 20; 1_2: its pair; 7_7: overall 25.
    assert predicted.tolist() == [40.0, 20.0, 15.0, 25.0]


def test_model_params_validate_family_and_feature_groups() -> None:
    with pytest.raises(ValueError, match=r"model family 'xgboost' is not one of"):
        ModelParams(family="xgboost")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"feature groups \['weather'\] invalid"):
        ModelParams(feature_groups=("zones", "weather"))
    with pytest.raises(ValueError, match=r"feature groups \(none\) invalid"):
        ModelParams(feature_groups=())


def test_model_params_features_and_mlflow_params() -> None:
    params = ModelParams(feature_groups=("time", "distance"))
    ridge = ModelParams(family="ridge", ridge_alpha=2.5)

    assert params.features == ["trip_distance", "pickup_hour", "pickup_dow", "pickup_datetime"]
    assert ModelParams().features == list(ALL_FEATURES)
    assert params.as_mlflow_params()["feature_groups"] == "time,distance"
    assert "ridge_alpha" not in params.as_mlflow_params()
    assert params.as_mlflow_params()["max_iter"] == str(ModelParams().max_iter)
    assert ridge.as_mlflow_params()["ridge_alpha"] == "2.5"
    assert not {"learning_rate", "max_iter", "l2_regularization"} & set(ridge.as_mlflow_params())


def test_model_input_is_strings_for_categories_and_floats_for_numbers() -> None:
    frame = features_frame(3).with_columns(
        pl.Series("pu_borough", [None, "Queens", "Bronx"], dtype=pl.String)
    )

    inputs = model_input(frame, ALL_FEATURES)

    assert list(inputs.columns) == model_inputs(ALL_FEATURES)
    assert inputs["PULocationID"].tolist() == [str(v) for v in frame["PULocationID"]]
    assert inputs["pu_borough"].tolist() == ["None", "Queens", "Bronx"]
    assert str(inputs["pickup_hour"].dtype) == "float64"
    assert str(inputs["trip_distance"].dtype) == "float64"


def test_gradient_boosting_learns_the_duration_and_beats_the_baseline() -> None:
    train, test = features_frame(800, seed=1), features_frame(200, seed=2)

    model = train_model(train, ModelParams(max_iter=100))
    metrics = regression_metrics(test["duration_min"].to_numpy(), model.predict(test))
    baseline = regression_metrics(
        test["duration_min"].to_numpy(), ZonePairBaseline(train).predict(test)
    )

    assert model.train_rows == 800
    assert model.feature_names == list(ALL_FEATURES)
    assert metrics["rmse"] < 1.0  # durations span 2..32 minutes
    assert baseline["rmse"] > 5 * metrics["rmse"]
    assert feature_importances(model, top=1) == {"trip_distance": 1.0}
    importances = feature_importances(model)
    assert max(importances, key=importances.__getitem__) == "trip_distance"
    assert sum(importances.values()) == pytest.approx(1.0, abs=1e-3)


def test_training_is_reproducible() -> None:
    data = features_frame(300)
    params = ModelParams(max_iter=30)

    first = train_model(data, params).predict(data)
    second = train_model(data, params).predict(data)

    assert np.array_equal(first, second)


@pytest.mark.parametrize("family", ["hist_gradient_boosting", "ridge"])
def test_training_fits_the_same_pipeline_as_pipeline_fit(family: str) -> None:
    data = features_frame(400)
    params = ModelParams(family=family, max_iter=20)  # type: ignore[arg-type]
    inputs = model_input(data, params.features)
    fitted_whole = build_pipeline(params).fit(inputs, data["duration_min"].to_numpy())

    trained = train_model(data, params)

    assert np.array_equal(trained.predict(data), fitted_whole.predict(inputs))


@pytest.mark.parametrize("group", FEATURE_GROUPS)
def test_a_day_model_from_the_training_rows_is_the_one_from_the_full_rows(group: str) -> None:
    data = features_frame(600)
    params = ModelParams(feature_groups=(group,), max_iter=20)
    rows = training_rows(data)

    from_rows, from_full = fit_day_model(rows, params), fit_day_model(data, params)

    assert "trip_key" not in rows.columns and rows.height == data.height
    assert rows.schema["PU_DO"] == pl.Categorical
    assert from_rows.validation == from_full.validation
    assert from_rows.baseline == from_full.baseline
    assert np.array_equal(from_rows.model.predict(data), from_full.model.predict(data))


def test_ridge_fits_a_linear_duration_and_ranks_distance_first() -> None:
    data = features_frame(400)
    model = train_model(data, ModelParams(family="ridge", ridge_alpha=1e-6))

    predicted = model.predict(data)

    assert regression_metrics(data["duration_min"].to_numpy(), predicted)["rmse"] < 0.01
    assert next(iter(feature_importances(model))) == "trip_distance"


def test_a_model_uses_only_its_feature_groups() -> None:
    data = features_frame(300)
    model = train_model(data, ModelParams(feature_groups=("zones",), max_iter=20))

    # Without distance, zones alone cannot explain the duration.
    assert regression_metrics(data["duration_min"].to_numpy(), model.predict(data))["rmse"] > 3
    assert set(feature_importances(model)) <= {"PULocationID", "DOLocationID", "PU_DO"}


def test_training_on_no_rows_fails_clearly() -> None:
    with pytest.raises(ValueError, match="cannot train on zero rows of trip_features"):
        train_model(features_frame(0), ModelParams())


def test_a_training_window_keeps_the_days_ending_on_the_day() -> None:
    features = features_frame()  # pickups on 2021-01-04 and 2021-01-05

    window = training_window(features, date(2021, 1, 5), days=1)

    assert window.height > 0
    assert window["pickup_datetime"].dt.date().unique().to_list() == [date(2021, 1, 5)]
    assert training_window(features, date(2021, 1, 5), days=2).height == features.height


@pytest.mark.parametrize("rows", [0, 1])
def test_a_training_window_too_small_to_train_and_validate_names_the_day(rows: int) -> None:
    features = features_frame(600).sort("pickup_datetime").head(rows)

    with pytest.raises(
        NotEnoughTripsError,
        match=rf"^partition 2021-01-04: the 3-day training window \(2021-01-02\.\.2021-01-04\) "
        rf"holds {rows} trip_features row\(s\); at least 2 are needed",
    ):
        training_window(features, date(2021, 1, 4), days=3)
