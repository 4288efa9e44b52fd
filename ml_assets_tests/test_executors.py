"""The default executor: steps in processes started from a fork server that has the code loaded."""

import gc
import os
import sys

import dagster as dg
import pytest

from ml_assets.executors import executor_from_env

STEP_PROCESS = dg.AssetKey("step_process")


@dg.asset
def step_process() -> dg.MaterializeResult:
    """Where the step ran, and what its process had imported before the step loaded this module."""
    return dg.MaterializeResult(
        metadata={
            "pid": os.getpid(),
            "parent_pid": os.getppid(),
            "code_location_preloaded": "ml_assets.definitions" in sys.modules,
            "instance_modules_preloaded": all(
                name in sys.modules for name in ("sqlalchemy", "ml_assets.local_event_log")
            ),
            # Objects the fork server froze: this process's collections never walk them.
            "inherited_objects_frozen": gc.get_freeze_count(),
            "code_location_built": _code_locations_built(),
        }
    )


def _code_locations_built() -> int:
    """How many settings' definitions this process holds built (in the fork server's memory)."""
    location = sys.modules.get("ml_assets.definitions")
    return location._definitions_for.cache_info().currsize if location else 0


def _job() -> dg.JobDefinition:
    return dg.Definitions(
        assets=[step_process],
        executor=executor_from_env({}),
        jobs=[dg.define_asset_job("step_process_job", [step_process])],
    ).resolve_job_def("step_process_job")


def _step_record(run_config: dict[str, object]) -> dict[str, object]:
    with dg.instance_for_test() as instance:
        result = dg.execute_job(dg.reconstructable(_job), instance, run_config=run_config)
        assert result.success
        (record,) = instance.fetch_materializations(STEP_PROCESS, limit=1).records
        metadata = record.asset_materialization.metadata  # type: ignore[union-attr]
        return {name: value.value for name, value in metadata.items()}


@pytest.mark.slow
def test_steps_start_from_a_fork_server_that_has_loaded_the_code_location() -> None:
    record = _step_record({})

    assert record["pid"] != os.getpid()
    # A spawned step process is a child of the run's process; a forked one, of the fork server.
    assert record["parent_pid"] != os.getpid()
    assert record["code_location_preloaded"] is True
    assert record["instance_modules_preloaded"] is True
    assert record["inherited_objects_frozen"] > 10_000
    assert record["code_location_built"] == 1


@pytest.mark.slow
def test_a_run_can_still_ask_for_spawned_processes_or_for_its_own_process() -> None:
    spawned = _step_record(
        {"execution": {"config": {"multiprocess": {"start_method": {"spawn": {}}}}}}
    )
    in_process = _step_record({"execution": {"config": {"in_process": {}}}})

    assert spawned["parent_pid"] == os.getpid()
    assert spawned["code_location_preloaded"] is False
    assert spawned["inherited_objects_frozen"] == 0
    assert spawned["code_location_built"] == 0
    assert in_process["pid"] == os.getpid()
