"""A throwaway Dagster instance and data directory for the cases that run the `dagster` CLI.

The TLC folder a case reads is served over HTTP on 127.0.0.1, so the project downloads and caches
its month files exactly as it does from TLC; the CLI runs from the work folder, so the repository's
`.env` plays no part.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.harness import REPO_ROOT, ChildRun, run_child
from bench.tlc_files import ZONE_LOOKUP

_OWN_VARIABLES = ("ML_ASSETS_", "MLFLOW_", "DAGSTER_")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve_directory(folder: Path) -> Iterator[str]:
    """Serve `folder` on a free loopback port for the duration of the block; yields its URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass(frozen=True)
class DagsterEnv:
    """Environment variables of a fresh instance: its DAGSTER_HOME, data dir and source."""

    root: Path
    variables: dict[str, str]

    @property
    def data_dir(self) -> Path:
        return Path(self.variables["ML_ASSETS_DATA_DIR"])

    @classmethod
    def create(cls, root: Path, *, tiny: bool, tlc_url: str | None) -> DagsterEnv:
        home = root / "dagster_home"
        home.mkdir(parents=True, exist_ok=True)
        # The instance users get from scripts/setup.
        shutil.copy(REPO_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
        variables = {
            name: value for name, value in os.environ.items() if not name.startswith(_OWN_VARIABLES)
        }
        variables |= {
            "DAGSTER_HOME": str(home),
            "ML_ASSETS_DATA_DIR": str(root / "data"),
            "ML_ASSETS_SOURCE": "sample" if tiny else "tlc",
            # As the .env from scripts/setup sets it: batched event writes.
            "DAGSTER_EVENT_BATCH_SIZE": "1000",
            "PYTHONPATH": os.pathsep.join(
                [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
        if tlc_url is not None:
            variables["ML_ASSETS_TLC_BASE_URL"] = tlc_url
            variables["ML_ASSETS_TLC_ZONE_LOOKUP_URL"] = f"{tlc_url}/{ZONE_LOOKUP}"
        return cls(root, variables)

    def run(self, args: Sequence[str]) -> ChildRun:
        return run_child(args, env=self.variables, cwd=self.root)

    def python(self, code: str) -> ChildRun:
        return self.run([sys.executable, "-c", code])

    def materialize(
        self,
        select: str,
        *,
        partition: str | None = None,
        partition_range: str | None = None,
        extra: Sequence[str] = (),
        module: str = "ml_assets.definitions",
        attribute: str | None = None,
    ) -> ChildRun:
        """`dagster asset materialize -m ml_assets.definitions ...`, as users run it."""
        args = [
            shutil.which("dagster") or "dagster",
            "asset",
            "materialize",
            "-m",
            module,
            *(["-a", attribute] if attribute else []),
            "--select",
            select,
        ]
        if partition:
            args += ["--partition", partition]
        if partition_range:
            args += ["--partition-range", partition_range]
        return self.run([*args, *extra])


IN_PROCESS_CONFIG = ["--config-json", '{"execution": {"config": {"in_process": {}}}}']
"""Run config asking the default executor to run every step in the run's own process."""

LAST_RUN_SECONDS = """
import dagster as dg

record = dg.DagsterInstance.get().get_run_records(limit=1)[0]
print(record.end_time - record.start_time)
"""


def last_run_seconds(env: DagsterEnv) -> float:
    """The duration Dagster recorded for the instance's latest run: from its start to its end.

    The run starts once its process has loaded the code and recorded the run's plan; what comes
    before (interpreter, imports, planning) is the same for a run of one day or of a year.
    """
    return float(env.python(LAST_RUN_SECONDS).check("reading the last run's duration").stdout)


PREPARE_DAYS = """
import sys
import dagster as dg
from ml_assets.definitions import build_definitions
from ml_assets.settings import Settings

defs = build_definitions(Settings.from_env())
days = [day for day in sys.argv[1].split(",") if day]
selection = sys.argv[2].split(",")
job = defs.resolve_implicit_global_asset_job_def()
instance = dg.DagsterInstance.get()
if "taxi_zones" in selection:
    job.execute_in_process(instance=instance, asset_selection=[dg.AssetKey("taxi_zones")])
    selection.remove("taxi_zones")
for day in days:
    job.execute_in_process(
        instance=instance, partition_key=day, asset_selection=[dg.AssetKey(k) for k in selection]
    )
"""
"""Materialize `selection` for each of `days` in one process (setup, not measured)."""


def prepare_days(env: DagsterEnv, days: Sequence[str], selection: Sequence[str]) -> None:
    env.run([sys.executable, "-c", PREPARE_DAYS, ",".join(days), ",".join(selection)]).check(
        f"preparing {', '.join(selection)}" + (f" for {days[0]}..{days[-1]}" if days else "")
    )
