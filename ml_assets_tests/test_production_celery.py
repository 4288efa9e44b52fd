"""Scale-out with Celery: the stack of `scripts/stack up` (Postgres-backed instance, daemon,
webserver, MLflow server, two Celery workers) runs the daily loop's steps in the workers; a worker
killed in the middle of a step has that step run again by the other worker. With Redis as the
broker instead of RabbitMQ, the steps reach the worker just the same."""

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import kombu
import pytest
import redis
import yaml
from dagster_celery.cli import get_validated_config
from dagster_graphql import DagsterGraphQLClient
from mlflow import MlflowClient

from ml_assets.executors import (
    CELERY_APP_SETTINGS,
    DEFAULT_CELERY_BACKEND,
    DEFAULT_CELERY_BROKER,
    celery_executor_config,
    executor_from_env,
)
from ml_assets.resources import build_resources
from ml_assets.settings import Settings
from ml_assets_tests.graph import taxi_zones
from ml_assets_tests.processes import free_port
from ml_assets_tests.production_services import (
    CELERY_WORKER_CONFIG,
    PG_HOST,
    PG_PORT,
    PG_USER,
    STACK_SCRIPT,
    child_environment,
    database_exists,
    drop_database,
    process_group_members,
    unique_name,
    wait_for,
)

DAY = "2021-01-01"
DEADLINES = "_kombu.binding_deadlines"
"""The sorted set where kombu's Redis transport keeps when each binding expires."""
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def test_executor_is_chosen_by_the_environment() -> None:
    assert executor_from_env({}).name == dg.multi_or_in_process_executor.name
    assert executor_from_env({"ML_ASSETS_EXECUTOR": "in_process"}) is dg.in_process_executor
    assert executor_from_env({"ML_ASSETS_EXECUTOR": "celery"}).name == "celery"
    with pytest.raises(ValueError, match="ML_ASSETS_EXECUTOR='dask': expected one of"):
        executor_from_env({"ML_ASSETS_EXECUTOR": "dask"})


def test_celery_executor_config_comes_from_the_environment() -> None:
    config = celery_executor_config(
        {
            "ML_ASSETS_CELERY_BROKER": "redis://127.0.0.1:6379/0",
            "ML_ASSETS_CELERY_BACKEND": "redis://127.0.0.1:6379/1",
            "ML_ASSETS_CELERY_QUEUE": "nightly",
        }
    )
    assert config["broker"] == "redis://127.0.0.1:6379/0"
    assert config["backend"] == "redis://127.0.0.1:6379/1"
    assert config["config_source"]["task_default_queue"] == "nightly"
    defaults = celery_executor_config({})
    assert (defaults["broker"], defaults["backend"]) == (
        DEFAULT_CELERY_BROKER,
        DEFAULT_CELERY_BACKEND,
    )
    assert defaults["config_source"]["task_default_queue"] == "dagster"


def test_worker_config_agrees_with_the_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    """deploy/celery.yaml (the workers) and the executor must share broker, backend and settings."""
    env = {
        "ML_ASSETS_CELERY_BROKER": "redis://127.0.0.1:6379/3",
        "ML_ASSETS_CELERY_BACKEND": "rpc://",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    worker = get_validated_config(str(CELERY_WORKER_CONFIG))
    executor = celery_executor_config(env)
    assert (worker["broker"], worker["backend"]) == (executor["broker"], executor["backend"])
    assert worker["config_source"] == CELERY_APP_SETTINGS
    assert yaml.safe_load(CELERY_WORKER_CONFIG.read_text())["execution"]["config"]["broker"] == {
        "env": "ML_ASSETS_CELERY_BROKER"
    }


def _read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = value.strip("'")
    return env


def _forget_queue(broker: str, queue: str) -> None:
    """Delete the test's queue from the broker, and on Redis the bindings kombu keeps beside it."""
    with kombu.Connection(broker) as connection:
        connection.default_channel.queue_delete(queue)
    if broker.startswith("redis://"):
        client = redis.Redis.from_url(broker)
        for key in client.scan_iter(f"*{queue}*"):
            client.delete(key)
        stale = [m for m in client.zrange(DEADLINES, 0, -1) if queue.encode() in m]
        if stale:
            client.zrem(DEADLINES, *stale)


@contextlib.contextmanager
def _stack_up(stack_dir: Path, broker: str, workers: int) -> Iterator[dict[str, str]]:
    """`scripts/stack up` on free ports, with its own databases and queue; `down` afterwards."""
    databases = [unique_name("ml_assets_test_dagster"), unique_name("ml_assets_test_mlflow")]
    queue = unique_name("ml_assets_test")
    env = child_environment(
        ML_ASSETS_STACK_DIR=str(stack_dir),
        DAGSTER_PG_HOST=PG_HOST,
        DAGSTER_PG_PORT=PG_PORT,
        DAGSTER_PG_USER=PG_USER,
        DAGSTER_PG_DB=databases[0],
        ML_ASSETS_MLFLOW_DB=databases[1],
        MLFLOW_PORT=str(free_port()),
        DAGSTER_WEBSERVER_PORT=str(free_port()),
        ML_ASSETS_CELERY_BROKER=broker,
        ML_ASSETS_CELERY_QUEUE=queue,
        ML_ASSETS_CELERY_WORKERS=str(workers),
    )
    try:
        up = subprocess.run(
            [str(STACK_SCRIPT), "up"], env=env, capture_output=True, text=True, timeout=400
        )
        assert up.returncode == 0, up.stdout + up.stderr
        assert "The stack is up" in up.stdout
        yield {**_read_env_file(stack_dir / "env"), "ML_ASSETS_STACK_DIR": str(stack_dir)}
    finally:
        pids = {p.stem: int(p.read_text()) for p in (stack_dir / "pids").glob("*.pid")}
        down = subprocess.run(
            [str(STACK_SCRIPT), "down"], env=env, capture_output=True, text=True, timeout=120
        )
        for name in databases:
            drop_database(name)
        _forget_queue(broker, queue)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not [name for name, pid in pids.items() if process_group_members(pid)]
        assert not list((stack_dir / "pids").glob("*.pid"))
        assert not any(database_exists(name) for name in databases)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The stack with RabbitMQ as the broker (the default) and two workers."""
    with _stack_up(tmp_path / "stack", DEFAULT_CELERY_BROKER, workers=2) as env:
        yield env


REDIS_BROKER = "redis://127.0.0.1:6379/7"
"""A database of its own on the local Redis, so a test never meets another user's keys."""


@pytest.fixture
def redis_stack(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The stack with Redis as the broker, as the README offers, and one worker."""
    with _stack_up(tmp_path / "stack", REDIS_BROKER, workers=1) as env:
        yield env


def _use_stack_instance(stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Point `dg.DagsterInstance.get()` in this process at the stack's Postgres instance."""
    for key in (
        "DAGSTER_HOME",
        "DAGSTER_PG_HOST",
        "DAGSTER_PG_PORT",
        "DAGSTER_PG_USER",
        "DAGSTER_PG_PASSWORD",
        "DAGSTER_PG_DB",
        "DAGSTER_MAX_CONCURRENT_RUNS",
    ):
        monkeypatch.setenv(key, stack[key])


def _step_events(instance: dg.DagsterInstance, run_id: str, step_key: str) -> list[dg.DagsterEvent]:
    return [
        entry.dagster_event
        for entry in instance.all_logs(run_id)
        if entry.dagster_event is not None and entry.dagster_event.step_key == step_key
    ]


def _celery_worker_of(event: dg.DagsterEvent) -> str | None:
    """`worker1` for the engine event `<queue>_worker1@<host>` reports when it picks up a step."""
    metadata = getattr(event.event_specific_data, "metadata", None) or {}
    worker = metadata.get("Celery worker")
    return worker.value.split("@")[0].rsplit("_", 1)[-1] if worker is not None else None


def _stack_settings(stack: dict[str, str]) -> Settings:
    """The settings the stack's runs use: the sample source, its data dir and MLflow server."""
    return Settings.from_env(
        {
            "ML_ASSETS_SOURCE": "sample",
            "ML_ASSETS_DATA_DIR": stack["ML_ASSETS_DATA_DIR"],
            "MLFLOW_TRACKING_URI": stack["MLFLOW_TRACKING_URI"],
        }
    )


def _submit_after_zones(instance: dg.DagsterInstance, stack: dict[str, str], job: str) -> str:
    """Materialize the zones every day needs into the stack's storage, then submit `job` for DAY
    to the deployment as a user would (the daemon launches the run); returns its run id."""
    resources = build_resources(_stack_settings(stack))
    assert dg.materialize([taxi_zones], resources=resources, instance=instance).success
    client = DagsterGraphQLClient("127.0.0.1", port_number=int(stack["DAGSTER_WEBSERVER_PORT"]))
    return client.submit_job_execution(job, tags={"dagster/partition": DAY})


def _finished_run(instance: dg.DagsterInstance, run_id: str, what: str) -> dg.DagsterRun:
    return wait_for(
        lambda: (r := instance.get_run_by_id(run_id)) and r.status in FINISHED and r,
        timeout=300,
        what=what,
    )


@pytest.mark.slow
def test_steps_run_in_celery_workers_and_survive_a_killed_worker(
    stack: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack_dir = Path(stack["ML_ASSETS_STACK_DIR"])
    data_dir = Path(stack["ML_ASSETS_DATA_DIR"])
    worker_pids = {
        name: int((stack_dir / "pids" / f"{name}.pid").read_text())
        for name in ("worker1", "worker2")
    }
    worker_processes = {name: process_group_members(pid) for name, pid in worker_pids.items()}
    _use_stack_instance(stack, monkeypatch)

    with dg.DagsterInstance.get() as instance:
        run_id = _submit_after_zones(instance, stack, "ml_loop_job")

        def training_started() -> tuple[str, int] | None:
            events = _step_events(instance, run_id, "duration_model")
            workers = [w for w in map(_celery_worker_of, events) if w]
            started = [e for e in events if e.event_type == dg.DagsterEventType.STEP_START]
            return (workers[-1], started[0].pid) if workers and started else None

        killed, killed_step_pid = wait_for(
            training_started, timeout=300, what="duration_model to start in a worker"
        )
        # The whole worker, mid-step: the dagster-celery process, Celery and its pool process.
        os.killpg(worker_pids[killed], signal.SIGKILL)
        survivor = "worker2" if killed == "worker1" else "worker1"

        run = _finished_run(instance, run_id, "the run to finish after a worker was killed")
        assert run.status == dg.DagsterRunStatus.SUCCESS

        logs = [e.dagster_event for e in instance.all_logs(run_id) if e.dagster_event]
        run_process = next(e.pid for e in logs if e.event_type == dg.DagsterEventType.RUN_START)
        step_pids = {e.pid for e in logs if e.event_type == dg.DagsterEventType.STEP_START}
        # Every step ran in a worker's pool process, none in the run's own process.
        assert run_process not in step_pids
        assert step_pids <= worker_processes["worker1"] | worker_processes["worker2"]
        assert killed_step_pid in worker_processes[killed]

        # The killed worker's step was handed to the other worker, which finished it.
        training = _step_events(instance, run_id, "duration_model")
        assert [w for w in map(_celery_worker_of, training) if w] == [killed, survivor]
        (success,) = [e for e in training if e.event_type == dg.DagsterEventType.STEP_SUCCESS]
        assert success.pid in worker_processes[survivor]
        assert not process_group_members(worker_pids[killed])

        # Outputs landed in the shared data directory, the model in the stack's MLflow server.
        for asset, suffix in [
            ("raw_trips", "parquet"),
            ("trip_features", "parquet"),
            ("duration_model", "json"),
        ]:
            assert (data_dir / "assets" / asset / f"{DAY}.{suffix}").exists(), asset
        mlflow = MlflowClient(tracking_uri=stack["MLFLOW_TRACKING_URI"])
        versions = mlflow.search_model_versions(f"name='{_stack_settings(stack).model_name}'")
        assert [v.tags.get("trained_through") for v in versions if v.status == "READY"][-1] == DAY
        assert list(Path(stack["ML_ASSETS_MLFLOW_ARTIFACTS"]).rglob("MLmodel"))

    status = subprocess.run(
        [str(STACK_SCRIPT), "status"],
        env={**os.environ, "ML_ASSETS_STACK_DIR": str(stack_dir)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"{killed}: not running" in status
    assert f"{survivor}: running" in status
    assert "daemon: running" in status and "mlflow: running" in status


@pytest.mark.slow
def test_steps_reach_a_worker_through_a_redis_broker(
    redis_stack: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack_dir = Path(redis_stack["ML_ASSETS_STACK_DIR"])
    data_dir = Path(redis_stack["ML_ASSETS_DATA_DIR"])
    worker = process_group_members(int((stack_dir / "pids" / "worker1.pid").read_text()))
    _use_stack_instance(redis_stack, monkeypatch)

    with dg.DagsterInstance.get() as instance:
        run_id = _submit_after_zones(instance, redis_stack, "ingestion_job")
        run = _finished_run(instance, run_id, "the ingestion run to finish")
        assert run.status == dg.DagsterRunStatus.SUCCESS

        logs = [e.dagster_event for e in instance.all_logs(run_id) if e.dagster_event]
        started = {
            e.step_key: e.pid for e in logs if e.event_type == dg.DagsterEventType.STEP_START
        }
        assert {"raw_trips", "trip_features"} <= set(started)
        # Each step ran in the worker that took it from the Redis queue.
        assert set(started.values()) <= worker
        assert {_celery_worker_of(e) for e in logs if _celery_worker_of(e)} == {"worker1"}
        for asset in ("raw_trips", "trip_features"):
            assert (data_dir / "assets" / asset / f"{DAY}.parquet").exists(), asset
