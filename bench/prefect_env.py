"""Prefect in an environment of its own, for the `peers` case: created once, reused after.

Prefect's dependencies (FastAPI, SQLAlchemy, pydantic settings, ...) must never touch the project's
environment, so the bench keeps a virtual environment under `bench/.venvs/prefect-<version>`
(ignored by git) with Prefect pinned, the libraries the flows compute with at the versions this
project runs (so both sides compute with the same polars, scikit-learn and MLflow), and this
repository installed without its dependencies (editable), so the flows import `ml_assets.lib`,
which imports no Dagster.

The environment records what it was built with (`bench-requirements.json`); a later run reuses it
when that matches and builds it again when it does not (a new pin, a library upgraded here).
It is built with `uv` (the dev extra installs it): pip took ~5 minutes to resolve and install
Prefect's dependencies here, uv takes well under a minute, and seconds once its per-user cache
(`~/.cache/uv`) holds the wheels, so a fresh clone on a machine that built it once (CI) pays
seconds. uv is given the package indexes pip is configured with (`pip config list`), so the
environment installs from wherever the project's own environment did.

`running_prefect_server` starts `prefect server start` from that environment on a free loopback
port for the duration of a block and stops it by its own process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from bench.harness import REPO_ROOT, CaseSkipped
from ml_assets_tests.processes import (
    default_signal_handling,
    free_port,
    stop_process_group,
    wait_until_answering,
)

PREFECT_VERSION = "3.9.1"
"""The latest Prefect release that installs here (`pip index versions prefect`, 2026-12-02)."""

VENVS_DIR = REPO_ROOT / "bench" / ".venvs"
SHARED_LIBRARIES = (
    "polars",
    "scikit-learn",
    "mlflow",
    "pandas",
    "numpy",
    "pyarrow",
    "skops",  # MLflow stores the project's sklearn models with skops; loading them needs it
    "threadpoolctl",
)
"""What the flows compute with, installed at the versions of the project's own environment."""

_MARKER = "bench-requirements.json"
_INSTALL_TIMEOUT_SECONDS = 1800


def requirements() -> list[str]:
    """Prefect pinned, and each shared library pinned to the version installed for the project."""
    pins = [f"prefect=={PREFECT_VERSION}"]
    for name in SHARED_LIBRARIES:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError as error:
            raise CaseSkipped(
                f"{name} is not installed in the project's environment ({sys.executable}); "
                "install the project with `pip install -e .[dev]` first"
            ) from error
    return pins


@dataclass(frozen=True)
class PrefectEnv:
    """A virtual environment with Prefect and the flows' libraries; `python` runs in it."""

    root: Path
    created_seconds: float | None
    """How long building it took in this run; None when an existing one was reused."""

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def prefect(self) -> Path:
        return self.root / "bin" / "prefect"

    @classmethod
    def ensure(cls, root: Path | None = None) -> PrefectEnv:
        """The environment at `root` (default `bench/.venvs/prefect-<version>`), built if needed.

        Raises CaseSkipped, with the installer's last lines, when it cannot be built here (for
        instance no network to PyPI, or no `uv`).
        """
        root = root or VENVS_DIR / f"prefect-{PREFECT_VERSION}"
        wanted = {"python": sys.version.split()[0], "requirements": requirements()}
        marker = root / _MARKER
        if marker.exists() and (root / "bin" / "python").exists():
            with contextlib.suppress(ValueError):
                if json.loads(marker.read_text()) == wanted:
                    return cls(root, created_seconds=None)
        started = time.perf_counter()
        # A half-built or outdated environment is rebuilt from nothing: an installer would
        # otherwise keep whatever an interrupted install left behind.
        shutil.rmtree(root, ignore_errors=True)
        root.parent.mkdir(parents=True, exist_ok=True)
        uv = _uv()
        _step(
            [uv, "venv", "--quiet", "--python", sys.executable, str(root)],
            "creating the virtual environment",
            root,
        )
        install = [uv, "pip", "install", "--quiet", "--python", str(root / "bin" / "python")]
        pip_settings = pip_configuration()
        indexes = uv_index_options(pip_settings)
        environment = _installer_environment(pip_settings)
        _step(
            [*install, *indexes, *wanted["requirements"]],
            "installing Prefect and the flows' libraries",
            root,
            environment,
        )
        _step(
            [*install, *indexes, "--no-deps", "-e", str(REPO_ROOT)],
            "installing this repository (without its dependencies)",
            root,
            environment,
        )
        # Written last: only a complete environment is ever reused.
        marker.write_text(json.dumps(wanted, indent=2) + "\n")
        return cls(root, created_seconds=time.perf_counter() - started)

    def variables(self, prefect_home: Path, api_url: str | None = None) -> dict[str, str]:
        """The environment of a flow run: its own PREFECT_HOME, and the server's URL if any.

        Without an API URL Prefect runs in its default ephemeral mode (it starts a temporary
        server of its own for the flow run). Project settings (`ML_ASSETS_*`, `DAGSTER_*`) and any
        Prefect settings of the caller are left out, so nothing but these decides how it runs.
        """
        # Prefect does not create its home: its SQLite database would fail to open.
        prefect_home.mkdir(parents=True, exist_ok=True)
        variables = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("PREFECT_", "ML_ASSETS_", "DAGSTER_", "VIRTUAL_ENV"))
            and name != "PYTHONPATH"
        }
        variables |= {
            "PREFECT_HOME": str(prefect_home),
            "PREFECT_LOCAL_STORAGE_PATH": str(prefect_home / "results"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            # Prefect gives its ephemeral server 20 s to start by default; the first start on a
            # fresh PREFECT_HOME (database migrations) on a busy 2-core machine takes longer.
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
            "PATH": os.pathsep.join([str(self.root / "bin"), variables.get("PATH", "")]),
        }
        if api_url is not None:
            variables["PREFECT_API_URL"] = api_url
        return variables


def _uv() -> str:
    """The `uv` executable of the project's environment (the `uv` package of the dev extra)."""
    try:
        from uv import find_uv_bin
    except ImportError as error:
        raise CaseSkipped(
            f"uv, which builds the Prefect environment, is not installed in {sys.executable}; "
            "install the project with `pip install -e .[dev]` first"
        ) from error
    return find_uv_bin()


def pip_configuration(listing: str | None = None) -> dict[str, str]:
    """pip's settings as `pip config list` prints them (its files and PIP_* variables), by key
    (`index-url`, `extra-index-url`, `find-links`, `constraint`, `cert`, ...); `listing` is that
    output, read from the project's pip when not given."""
    if listing is None:
        listing = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    from_files: dict[str, str] = {}
    from_variables: dict[str, str] = {}
    for line in listing.splitlines():
        name, _, quoted = line.partition("=")
        # `global.find-links='...'` from a file, `:env:.find-links='...'` from PIP_FIND_LINKS.
        read = from_variables if name.startswith(":env:") else from_files
        read[name.rpartition(".")[2]] = quoted.strip().strip("'\"")
    # As in pip, a variable wins over the files.
    return from_files | from_variables


def uv_index_options(pip_settings: Mapping[str, str]) -> list[str]:
    """uv's options for the indexes, find-links folders and constraints pip is configured with.

    uv reads none of pip's configuration. Like pip, it is told to take the best version any index
    offers (`unsafe-best-match`), not the first index that has the package.
    """
    options = ["--index-strategy", "unsafe-best-match"]
    flags = {
        "index-url": "--index-url",
        "extra-index-url": "--extra-index-url",
        "find-links": "--find-links",
        "constraint": "--constraint",
    }
    for key, flag in flags.items():
        for value in pip_settings.get(key, "").split():
            options += [flag, value]
    return options


def _installer_environment(pip_settings: Mapping[str, str]) -> dict[str, str]:
    """uv's environment: pip's CA bundle, if pip has one, is uv's too."""
    if cert := pip_settings.get("cert"):
        return {**os.environ, "SSL_CERT_FILE": cert}
    return dict(os.environ)


def _step(
    args: Sequence[str], what: str, root: Path, environment: Mapping[str, str] | None = None
) -> None:
    try:
        subprocess.run(
            list(args),
            check=True,
            capture_output=True,
            text=True,
            timeout=_INSTALL_TIMEOUT_SECONDS,
            start_new_session=True,
            env=None if environment is None else dict(environment),
        )
    except subprocess.CalledProcessError as error:
        tail = "\n".join((error.stderr or error.stdout or "").strip().splitlines()[-10:])
        shutil.rmtree(root, ignore_errors=True)
        raise CaseSkipped(
            f"the Prefect {PREFECT_VERSION} environment could not be built in {root} "
            f"({what} failed; is PyPI reachable?):\n{tail}"
        ) from error
    except subprocess.TimeoutExpired as error:
        shutil.rmtree(root, ignore_errors=True)
        raise CaseSkipped(
            f"the Prefect {PREFECT_VERSION} environment could not be built in {root}: "
            f"{what} took more than {_INSTALL_TIMEOUT_SECONDS} s"
        ) from error


@contextlib.contextmanager
def running_prefect_server(
    env: PrefectEnv, variables: Mapping[str, str], log: Path, timeout: float = 300
) -> Iterator[tuple[str, float]]:
    """`prefect server start` on 127.0.0.1 and a free port; yields its API URL and start time."""
    port = free_port()
    with log.open("w") as output:
        server = subprocess.Popen(
            [str(env.prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=dict(variables),
            cwd=log.parent,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=default_signal_handling,
        )
    try:
        api_url = f"http://127.0.0.1:{port}/api"
        started = wait_until_answering(
            f"{api_url}/health", server, log, "prefect server start", timeout
        )
        yield api_url, started
    finally:
        stop_process_group(server)
