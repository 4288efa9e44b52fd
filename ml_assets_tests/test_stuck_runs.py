"""Runs never stay stuck: a run whose process died is marked failed (and retried where its job
allows), a run waiting too long in the queue or on a pool is announced."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster import DagsterEventType, DagsterRunStatus

from ml_assets.lib.run_health import (
    RUN_PROCESS_TAG,
    Liveness,
    ProcessIdentity,
    Waiting,
    WaitLimits,
    check_process,
    overdue,
    process_start_ticks,
    waiting_message,
)
from ml_assets.resources.notifier import Notifier
from ml_assets.run_process import recording_run_process
from ml_assets.sensors.stuck_runs import stuck_run_monitor_sensor, waiting_run_alert_sensor
from ml_assets.settings import Settings, SettingsError
from ml_assets_tests.alert_receivers import WebhookServer, webhook_server
from ml_assets_tests.conftest import REPO_ROOT, local_instance, new_local_home
from ml_assets_tests.processes import default_signal_handling

UI = "http://dagster.example:3000"


def _dead_pid() -> int:
    """The pid of a process that has exited and been collected."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@contextlib.contextmanager
def _zombie() -> Iterator[int]:
    """A killed child whose exit status is not collected yet (as a busy parent leaves it)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        os.kill(child.pid, signal.SIGKILL)
        time.sleep(0.3)
        yield child.pid
    finally:
        child.wait()


def _identity(run_id: str = "r1", **changes: Any) -> ProcessIdentity:
    fields = {**ProcessIdentity.current(run_id).__dict__, **changes}
    return ProcessIdentity(**fields)


# --- plain logic ----------------------------------------------------------------------------


def test_identity_tag_round_trip_and_inherited_tags_are_ignored() -> None:
    identity = ProcessIdentity.current("run-a")
    assert identity.pid == os.getpid() and identity.start_ticks == process_start_ticks(os.getpid())
    tags = {RUN_PROCESS_TAG: identity.to_tag()}
    assert ProcessIdentity.from_tags("run-a", tags) == identity
    # A retry copies its parent's tags: the parent's dead process is not the retry's.
    assert ProcessIdentity.from_tags("run-b", tags) is None
    assert ProcessIdentity.from_tags("run-a", {RUN_PROCESS_TAG: "not json"}) is None
    assert ProcessIdentity.from_tags("run-a", {}) is None


def test_a_process_is_alive_gone_or_elsewhere(tmp_path: Path) -> None:
    assert check_process(_identity()).liveness == Liveness.alive
    verdict = check_process(_identity(pid=_dead_pid()))
    assert verdict.liveness == Liveness.gone and "no process" in verdict.reason
    with _zombie() as pid:
        verdict = check_process(_identity(pid=pid, start_ticks=process_start_ticks(pid)))
    assert verdict == verdict.__class__(Liveness.gone, f"process {pid} has exited (a zombie)")
    # Our pid, but a start time of another process: the recorded process exited, its pid reused.
    verdict = check_process(_identity(start_ticks=(process_start_ticks(os.getpid()) or 0) + 1))
    assert verdict.liveness == Liveness.gone and "pid was reused" in verdict.reason
    # Another machine: a host-local check must not judge it, even if the pid is gone here.
    verdict = check_process(_identity(host="celery-worker-7", pid=_dead_pid()))
    assert verdict.liveness == Liveness.other_host and "celery-worker-7" in verdict.reason
    # The machine restarted since: whatever now has that pid is not the run's process.
    fake_proc = tmp_path / "proc"
    (fake_proc / "sys/kernel/random").mkdir(parents=True)
    (fake_proc / "sys/kernel/random/boot_id").write_text("another-boot\n")
    verdict = check_process(_identity(), proc=fake_proc)
    assert verdict.liveness == Liveness.gone and "restarted" in verdict.reason


def test_wait_limits_are_settings() -> None:
    defaults = Settings.from_env({})
    assert (defaults.queued_alert_minutes, defaults.pool_wait_alert_minutes) == (60.0, 60.0)
    chosen = Settings.from_env(
        {"ML_ASSETS_QUEUED_ALERT_MINUTES": "15", "ML_ASSETS_POOL_WAIT_ALERT_MINUTES": "2.5"}
    )
    assert (chosen.queued_alert_minutes, chosen.pool_wait_alert_minutes) == (15.0, 2.5)
    for bad in ("0", "-3", "soon", "inf"):
        with pytest.raises(SettingsError) as raised:
            Settings.from_env({"ML_ASSETS_QUEUED_ALERT_MINUTES": bad})
        assert str(raised.value) == (
            f"ML_ASSETS_QUEUED_ALERT_MINUTES={bad!r}: expected a positive number, such as 60"
        )


def test_overdue_waits_and_their_message() -> None:
    now = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    queued = Waiting("q1", "daily_job", "2026-12-01", now - timedelta(minutes=95))
    fresh = Waiting("q2", "daily_job", "2026-11-30", now - timedelta(minutes=5))
    pooled = Waiting(
        "s1", "training_job", None, now - timedelta(minutes=70), pool="training", step="model"
    )
    assert overdue([fresh, queued, pooled], 60, now) == [queued, pooled]
    assert pooled.key == "s1:model" and queued.key == "q1"

    message = waiting_message(queued, now=now, limit_minutes=60, ui_url=UI)
    assert message.title == "⏳ daily_job [2026-12-01] waiting in the run queue for 1 h 35 min"
    assert "**Since:** 2026-12-02 07:25 UTC" in message.body
    assert f"**In Dagster:** {UI}/runs/q1" in message.body
    message = waiting_message(pooled, now=now, limit_minutes=60, ui_url=UI)
    assert message.title == "⏳ training_job waiting on pool training for 1 h 10 min"
    assert "**Step:** model" in message.body and "dagster instance concurrency get" in message.body


# --- the sensors on a real instance ---------------------------------------------------------


@dg.op
def noop() -> None:
    pass


@dg.job
def some_job() -> None:
    noop()


def _run(instance: dg.DagsterInstance, status: DagsterRunStatus, **tags: str) -> dg.DagsterRun:
    return instance.create_run_for_job(some_job, status=status, tags=tags)


def _failure_message(instance: dg.DagsterInstance, run_id: str) -> str:
    (entry,) = instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE)
    return entry.dagster_event.message or ""


def test_stuck_run_monitor_fails_only_runs_whose_process_died_here(tmp_path: Path) -> None:
    with local_instance(new_local_home(tmp_path)) as instance:
        dead = _run(instance, DagsterRunStatus.STARTED)
        dead_pid = _dead_pid()
        instance.add_run_tags(
            dead.run_id, {RUN_PROCESS_TAG: _identity(dead.run_id, pid=dead_pid).to_tag()}
        )
        alive = _run(instance, DagsterRunStatus.STARTED)
        instance.add_run_tags(alive.run_id, {RUN_PROCESS_TAG: _identity(alive.run_id).to_tag()})
        remote = _run(instance, DagsterRunStatus.STARTED)
        instance.add_run_tags(
            remote.run_id,
            {RUN_PROCESS_TAG: _identity(remote.run_id, host="k8s-run-pod", pid=dead_pid).to_tag()},
        )
        # A retry not yet recording its own process carries its parent's tag.
        inherited = _run(
            instance,
            DagsterRunStatus.STARTED,
            **{RUN_PROCESS_TAG: _identity(dead.run_id, pid=dead_pid).to_tag()},
        )
        unrecorded = _run(instance, DagsterRunStatus.STARTED)

        sensor = stuck_run_monitor_sensor()
        result = sensor(dg.build_sensor_context(instance=instance))
        assert "1 marked failed" in str(result.skip_message)

        statuses = {
            name: instance.get_run_by_id(run.run_id).status
            for name, run in {
                "dead": dead,
                "alive": alive,
                "remote": remote,
                "inherited": inherited,
                "unrecorded": unrecorded,
            }.items()
        }
        assert statuses == {
            "dead": DagsterRunStatus.FAILURE,
            "alive": DagsterRunStatus.STARTED,
            "remote": DagsterRunStatus.STARTED,
            "inherited": DagsterRunStatus.STARTED,
            "unrecorded": DagsterRunStatus.STARTED,
        }
        message = _failure_message(instance, dead.run_id)
        assert message.startswith(f"The run's process (pid {dead_pid} on host ")
        assert f"no process {dead_pid} exists any more" in message
        # The failure is a RUN_FAILURE status change, which the failure alert and run retries read.
        changes = instance.fetch_run_status_changes(DagsterEventType.RUN_FAILURE, limit=10)
        assert [record.run_id for record in changes.records] == [dead.run_id]
        # Announced once: the next tick leaves the failed run alone.
        sensor(dg.build_sensor_context(instance=instance))
        assert len(instance.all_logs(dead.run_id, of_type=DagsterEventType.RUN_FAILURE)) == 1


def test_the_recording_executor_tags_the_run_with_its_process(tmp_path: Path) -> None:
    with local_instance(new_local_home(tmp_path)) as instance:
        result = dg.execute_job(dg.reconstructable(_recorded_job), instance=instance)
        assert result.success
        run = instance.get_run_by_id(result.run_id)
    identity = ProcessIdentity.from_tags(run.run_id, run.tags)
    assert identity == ProcessIdentity.current(run.run_id)
    # Same name and config as the wrapped executor: run config written for it still applies.
    assert _recorded_job().executor_def.name == dg.in_process_executor.name


def _recorded_job() -> dg.JobDefinition:
    return some_job.graph.to_job(
        name="recorded", executor_def=recording_run_process(dg.in_process_executor)
    )


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    with webhook_server() as server:
        yield server


def _tick(
    sensor: dg.SensorDefinition,
    instance: dg.DagsterInstance,
    notifier: Notifier,
    cursor: str | None,
) -> str | None:
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"notifier": notifier}
    )
    sensor(context)
    return context.cursor


def test_a_step_blocked_on_a_pool_too_long_is_announced_once(
    tmp_path: Path, webhook: WebhookServer
) -> None:
    notifier = Notifier(urls=f"json://{webhook.base_url}/alerts", ui_url=UI, backoff_seconds=0.01)
    sensor = waiting_run_alert_sensor(WaitLimits(queued_minutes=60, pool_minutes=0.01))
    with local_instance(new_local_home(tmp_path)) as instance:
        started = _run(instance, DagsterRunStatus.STARTED, **{"dagster/partition": "2026-12-01"})
        # What Dagster's executor logs while a step waits for a slot of its pool.
        instance.report_engine_event(
            "Step blocked by limit for pool training", started, step_key="noop"
        )
        instance.report_engine_event(
            "Step still blocked by limit for pool training", started, step_key="noop"
        )
        time.sleep(1)
        cursor = _tick(sensor, instance, notifier, None)
        (payload,) = webhook.payloads("/alerts")
        assert payload["title"] == "⏳ some_job [2026-12-01] waiting on pool training for 0 min"
        assert "**Step:** noop" in payload["message"]
        assert json.loads(cursor or "[]") == [f"{started.run_id}:noop"]
        # Still waiting: not announced again.
        cursor = _tick(sensor, instance, notifier, cursor)
        assert len(webhook.payloads("/alerts")) == 1
        # The step got its slot: nothing is overdue any more.
        _step_started(instance, started)
        cursor = _tick(sensor, instance, notifier, cursor)
        assert json.loads(cursor or "[]") == [] and len(webhook.payloads("/alerts")) == 1


def _step_started(instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    instance.report_dagster_event(
        dg.DagsterEvent(
            event_type_value=DagsterEventType.STEP_START.value,
            job_name=run.job_name,
            step_key="noop",
            message="Started execution of step.",
        ),
        run_id=run.run_id,
    )


# --- against a real daemon ------------------------------------------------------------------

KILL_TO_FAILURE_BOUND_SECONDS = 60
"""The test location's sensor checks every 3 s; the daemon evaluates sensors every few seconds."""


def _wait_for(what: str, condition: Callable[[], Any], timeout: float, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(1)
    pytest.fail(f"{what} not within {timeout:.0f}s; daemon log:\n{log.read_text()[-4000:]}")


@contextlib.contextmanager
def _process(
    argv: list[str], env: dict[str, str], cwd: Path, log: Path
) -> Iterator[subprocess.Popen]:
    with log.open("w") as output:
        child = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=default_signal_handling,
        )
    try:
        yield child
    finally:
        # Its own process group: the daemon's code server and any run worker go with it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=10)


def _daemon(env: dict[str, str], cwd: Path, log: Path) -> contextlib.AbstractContextManager:
    """`dagster-daemon run` on the test location, in its own process group with its code server
    and the run workers that code server starts."""
    return _process([sys.executable, "-m", "dagster._daemon", "run", *LOCATION], env, cwd, log)


LOCATION = ["-m", "ml_assets_tests.stuck_run_location"]
DAGSTER = [sys.executable, "-m", "dagster"]


@pytest.mark.slow
def test_killed_runs_are_marked_failed_by_a_running_daemon_and_retried(tmp_path: Path) -> None:
    """A queued run is announced; once started, Dagster's processes are killed with it (a crash,
    the OOM killer, a reboot): the next daemon marks it failed and retries it. A CLI run killed
    with kill -9 is marked failed by the running daemon."""
    home = new_local_home(tmp_path)
    attempts = tmp_path / "attempts"
    attempts.mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "STUCK_RUN_TEST_DIR": str(attempts),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    daemon_log = tmp_path / "daemon.log"
    with local_instance(home) as instance, webhook_server() as webhook:

        def recorded_process(run_id: str) -> ProcessIdentity | None:
            run = instance.get_run_by_id(run_id)
            return run and ProcessIdentity.from_tags(run_id, run.tags)

        def failed_within_bound(run_id: str) -> None:
            since = time.monotonic()
            _wait_for(
                f"run {run_id} marked failed",
                lambda: instance.get_run_by_id(run_id).status == DagsterRunStatus.FAILURE,
                KILL_TO_FAILURE_BOUND_SECONDS,
                daemon_log,
            )
            assert time.monotonic() - since < KILL_TO_FAILURE_BOUND_SECONDS

        # 0. Launched while no daemon runs: the run waits in the queue, and is announced once.
        subprocess.run(
            [*DAGSTER, "job", "launch", *LOCATION, "-j", "hanging_job"],
            env=env,
            cwd=tmp_path,
            check=True,
            capture_output=True,
            timeout=120,
        )
        (launched,) = instance.get_runs()
        assert launched.status == DagsterRunStatus.QUEUED
        notifier = Notifier(urls=f"json://{webhook.base_url}/alerts", ui_url=UI)
        sensor = waiting_run_alert_sensor(WaitLimits(queued_minutes=0.01, pool_minutes=60))
        time.sleep(1)
        cursor = _tick(sensor, instance, notifier, _tick(sensor, instance, notifier, None))
        (payload,) = webhook.payloads("/alerts")
        assert payload["title"] == "⏳ hanging_job waiting in the run queue for 0 min"
        assert f"{UI}/runs/{launched.run_id}" in payload["message"]
        assert json.loads(cursor or "[]") == [launched.run_id]

        # 1. The daemon starts it; then the daemon, its code server and the run worker are all
        # killed at once. (A run worker killed alone is failed by the code server that started
        # it; with the code server gone too, nothing in Dagster notices.)
        with _daemon(env, tmp_path, daemon_log) as daemon:
            worker = _wait_for(
                "the launched run recording its process",
                lambda: recorded_process(launched.run_id),
                180,
                daemon_log,
            )
            assert worker.host == ProcessIdentity.current("x").host and worker.pid != os.getpid()
            _wait_for("the step starting", lambda: list(attempts.glob("started-*")), 60, daemon_log)
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=30)
        time.sleep(2)
        assert instance.get_run_by_id(launched.run_id).status == DagsterRunStatus.STARTED
        with pytest.raises(ProcessLookupError):
            os.kill(worker.pid, 0)

        (attempts / "release").touch()  # the retry finishes at once
        with _daemon(env, tmp_path, daemon_log):
            failed_within_bound(launched.run_id)
            message = _failure_message(instance, launched.run_id)
            assert message.startswith(
                f"The run's process (pid {worker.pid} on host {worker.host}) died without "
                f"finishing the run: no process {worker.pid} exists any more (run started "
            )
            assert "Marked failed by the stuck_run_monitor sensor" in message
            changes = instance.fetch_run_status_changes(DagsterEventType.RUN_FAILURE, limit=10)
            assert [record.run_id for record in changes.records] == [launched.run_id]

            # Its job allows one retry: Dagster's retry daemon re-executes it, and it succeeds.
            def retry() -> dg.DagsterRun | None:
                runs = instance.get_runs(
                    dg.RunsFilter(tags={"dagster/parent_run_id": launched.run_id})
                )
                return runs[0] if runs and runs[0].status == DagsterRunStatus.SUCCESS else None

            retried = _wait_for("the retry succeeding", retry, 180, daemon_log)
            assert retried.tags["dagster/retry_number"] == "1"
            assert instance.get_run_by_id(launched.run_id).tags["dagster/auto_retry_run_id"] == (
                retried.run_id
            )
            (attempts / "release").unlink()

            # 2. A CLI run (`dagster asset materialize`: no launcher, no code server) killed with
            # kill -9 while the daemon runs.
            cli_log = tmp_path / "cli.log"
            with _process(
                [*DAGSTER, "asset", "materialize", *LOCATION, "--select", "hanging_asset"],
                env,
                tmp_path,
                cli_log,
            ) as cli:

                def cli_run() -> dg.DagsterRun | None:
                    runs = instance.get_runs(dg.RunsFilter(job_name="__ASSET_JOB"))
                    return runs[0] if runs and recorded_process(runs[0].run_id) else None

                run = _wait_for("the CLI run recording its process", cli_run, 120, cli_log)
                assert recorded_process(run.run_id).pid == cli.pid
                _wait_for(
                    "its step starting",
                    lambda: len(list(attempts.glob("started-*"))) == 3,
                    60,
                    cli_log,
                )
                # Not collected until after the verdict: a zombie, as a busy parent leaves it.
                os.kill(cli.pid, signal.SIGKILL)
                failed_within_bound(run.run_id)
            message = _failure_message(instance, run.run_id)
            assert message.startswith(f"The run's process (pid {cli.pid} on host {worker.host})")
            assert f"process {cli.pid} has exited (a zombie)" in message
