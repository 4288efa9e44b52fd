"""`promote_evaluated_day`: `promotion_job` for each day as soon as it is evaluated, in date order.

The sensor reads `model_evaluation` materializations from the instance; here they are reported
directly, as a run evaluating the days would record them.
"""

import json

import dagster as dg

from ml_assets.definitions import build_definitions
from ml_assets.settings import Settings

MODEL_EVALUATION = dg.AssetKey("model_evaluation")


def _evaluated(instance: dg.DagsterInstance, *days: str) -> None:
    for day in days:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=MODEL_EVALUATION, partition=day)
        )


def _look(
    sensor: dg.SensorDefinition, instance: dg.DagsterInstance, cursor: str | None
) -> dg.SensorResult:
    with dg.build_sensor_context(instance=instance, cursor=cursor) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def test_days_evaluated_before_the_first_look_are_left_alone(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    sensor = build_definitions(settings).get_sensor_def("promote_evaluated_day")
    _evaluated(instance, "2021-01-05")

    first = _look(sensor, instance, None)

    assert not first.run_requests
    assert not _look(sensor, instance, first.cursor).run_requests


def test_each_evaluated_day_is_promoted_once_in_date_order(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    sensor = build_definitions(settings).get_sensor_def("promote_evaluated_day")
    cursor = _look(sensor, instance, None).cursor
    # A backfill's scoring runs can finish out of order.
    _evaluated(instance, "2021-01-07", "2021-01-05", "2021-01-06")

    result = _look(sensor, instance, cursor)

    requests = result.run_requests or []
    assert [request.partition_key for request in requests] == [
        "2021-01-05",
        "2021-01-06",
        "2021-01-07",
    ]
    assert len({request.run_key for request in requests}) == 3
    assert json.loads(result.cursor or "{}")["waiting"] == {}
    assert not _look(sensor, instance, result.cursor).run_requests
    # A day evaluated again (a re-run) is promoted again.
    _evaluated(instance, "2021-01-06")
    (again,) = _look(sensor, instance, result.cursor).run_requests or []
    assert again.partition_key == "2021-01-06"


def _look_during_a_run(
    settings: Settings, instance: dg.DagsterInstance, *, evaluates: bool, evaluated_elsewhere: bool
) -> dg.SensorResult:
    """What the sensor returns while a run validates 2021-01-05 with a stand-in gate: a run that
    also evaluates the day first (`evaluates`, as a backfill of the model group plans it), during
    which another run evaluated the day again if `evaluated_elsewhere`."""
    sensor = build_definitions(settings).get_sensor_def("promote_evaluated_day")
    cursor = _look(sensor, instance, None).cursor
    looks: list[dg.SensorResult] = []
    days = dg.DailyPartitionsDefinition(start_date=settings.start_date)

    @dg.asset(name="model_evaluation", partitions_def=days)
    def evaluation() -> None: ...

    # After the evaluation, when the run holds both: the day is evaluated when the sensor looks.
    @dg.asset(
        name="challenger_validation", partitions_def=days, deps=[evaluation] if evaluates else []
    )
    def validation() -> None:
        if evaluated_elsewhere:
            _evaluated(instance, "2021-01-05")
        looks.append(_look(sensor, instance, cursor))

    steps = [evaluation, validation] if evaluates else [validation]
    assert dg.materialize(steps, instance=instance, partition_key="2021-01-05")
    (during,) = looks
    return during


def test_a_day_decided_by_the_run_that_evaluated_it_is_left_to_that_run(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    during = _look_during_a_run(settings, instance, evaluates=True, evaluated_elsewhere=False)

    assert not during.run_requests
    assert json.loads(during.cursor or "{}")["waiting"] == {}
    # A day evaluated again on its own is promoted again, by promotion_job.
    _evaluated(instance, "2021-01-05")
    sensor = build_definitions(settings).get_sensor_def("promote_evaluated_day")
    (again,) = _look(sensor, instance, during.cursor).run_requests or []
    assert again.partition_key == "2021-01-05"


def test_a_day_evaluated_again_while_an_earlier_decision_runs_is_promoted_again(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    # The gate of the day is deciding an earlier evaluation while another run evaluates the day
    # again: that evaluation needs a decision of its own.
    during = _look_during_a_run(settings, instance, evaluates=False, evaluated_elsewhere=True)

    (request,) = during.run_requests or []
    assert request.partition_key == "2021-01-05"


def test_a_day_decided_after_its_evaluation_is_not_promoted_again(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    sensor = build_definitions(settings).get_sensor_def("promote_evaluated_day")
    cursor = _look(sensor, instance, None).cursor
    _evaluated(instance, "2021-01-05", "2021-01-06")
    # The gate of 2021-01-05 ran (promotion_job launched by hand) before the sensor looked.
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key="challenger_validation", partition="2021-01-05")
    )

    requests = _look(sensor, instance, cursor).run_requests or []

    assert [request.partition_key for request in requests] == ["2021-01-06"]


def test_the_sensor_looks_every_second_and_runs_by_default(settings: Settings) -> None:
    sensor = build_definitions(settings).get_sensor_def("promote_evaluated_day")
    assert sensor.minimum_interval_seconds == 1
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.job_name == "promotion_job"
