"""Helpers for the production-shape tests: throwaway Postgres databases and service processes.

Every test gets its own database (dropped afterwards), its own Celery queue and free loopback
ports, so the tests can run again and again, and next to a stack someone is using.
"""

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from pathlib import Path
from typing import Any

import psycopg2

from ml_assets_tests.processes import default_signal_handling

REPO_ROOT = Path(__file__).resolve().parents[1]
PRODUCTION_TEMPLATE = REPO_ROOT / "deploy" / "dagster-production.yaml"
CELERY_WORKER_CONFIG = REPO_ROOT / "deploy" / "celery.yaml"
STACK_SCRIPT = REPO_ROOT / "scripts" / "stack"

PG_HOST = "127.0.0.1"
PG_PORT = "5432"
PG_USER = "postgres"


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def _admin_connection() -> Any:
    connection = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres")
    connection.autocommit = True
    return connection


def create_database(name: str) -> None:
    with closing(_admin_connection()) as connection, connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    """Drop `name`, closing connections left open by processes that were killed."""
    with closing(_admin_connection()) as connection, connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_exists(name: str) -> bool:
    with closing(_admin_connection()) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        return cursor.fetchone() is not None


@contextmanager
def postgres_database(prefix: str = "ml_assets_test") -> Iterator[str]:
    """A new, empty database on the local PostgreSQL, dropped on exit."""
    name = unique_name(prefix)
    create_database(name)
    try:
        yield name
    finally:
        drop_database(name)


def postgres_url(database: str) -> str:
    return f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


def production_dagster_home(path: Path) -> Path:
    """A DAGSTER_HOME holding the production instance template."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(PRODUCTION_TEMPLATE, path / "dagster.yaml")
    return path


def instance_environment(dagster_home: Path, database: str) -> dict[str, str]:
    """The variables the production template reads, for a database on the local PostgreSQL."""
    return {
        "DAGSTER_HOME": str(dagster_home),
        "DAGSTER_PG_HOST": PG_HOST,
        "DAGSTER_PG_PORT": PG_PORT,
        "DAGSTER_PG_USER": PG_USER,
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": database,
        "DAGSTER_MAX_CONCURRENT_RUNS": "4",
    }


def child_environment(**overrides: str) -> dict[str, str]:
    """This process's environment without any ml_assets/Dagster/MLflow setting, plus `overrides`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ML_ASSETS_", "DAGSTER_", "MLFLOW_"))
    }
    env.update(overrides)
    return env


def workspace_file(path: Path) -> Path:
    path.write_text(
        "load_from:\n"
        "  - python_module:\n"
        "      module_name: ml_assets.definitions\n"
        "      location_name: ml_assets\n"
    )
    return path


def start_service(
    command: list[str], env: dict[str, str], log_path: Path, cwd: Path
) -> subprocess.Popen[bytes]:
    """Start `command` in its own session (so it can be stopped with every child it starts)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=default_signal_handling,
        )


def stop_service(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Stop the process group `process` leads: SIGTERM, then SIGKILL if it does not exit."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            return
    kill_process_group(process.pid)
    process.wait()


def kill_process_group(pgid: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def process_group_members(pgid: int) -> set[int]:
    """Pids of the live processes in process group `pgid` (read from /proc)."""
    members = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may contain spaces: fields after its closing bracket.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:
            members.add(int(entry.name))
    return members


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll `condition` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
