"""What the default executor's fork server holds before it starts a step's process.

Dagster's multiprocess executor, as ml_assets configures it (`ml_assets.executors`), forks every
step's process from a server that imports `FORKSERVER_PRELOAD` once per run. This module is the
last of those imports, and the fork server is the only process that imports it: importing it is
what it is for, so, unlike every other module of ml_assets, it acts when imported.

- It imports what a step's process needs to open the instance and which Dagster imports lazily:
  SQLAlchemy and alembic (every SQL storage of Dagster uses them), the pooled event log of the
  local instance and `upath`. Imported in each step's process instead, they took about 0.35 s of
  every step on this 2-core machine.
- It builds the code location's definitions from the settings in its environment, which is the
  environment of every step it starts: a step's process loads the code location, finds them built
  (`ml_assets.definitions` keeps them per settings and process) and skips 0.1 to 0.2 s; with other
  settings it builds its own, as before.
- Then it freezes the garbage collector's view of every object it holds (`gc.freeze()`,
  as Python's documentation advises for a process that forks): a step's process never walks them
  in a collection. The first full collection of each step otherwise walked some 200,000 inherited
  objects, 0.1 to 0.2 s, and copied the memory pages they live on.

Scoring a day through the CLI (eight step processes) took about a fifth less time with the imports
and the frozen objects (`python -m bench daily`); with the definitions built, each step's process
starts its step about 0.1 s sooner again (the gap between Dagster's "worker started" and "resource
init started" events in the run's log).
"""

import contextlib
import gc
import importlib

STEP_PROCESS_IMPORTS = ("sqlalchemy", "alembic.script", "upath.core", "ml_assets.local_event_log")
"""Modules a step's process imports to open the instance: Dagster's own dependencies and the local
instance's event log. Each is a head start, not a need: one that fails to import is skipped."""


def _warm_up() -> None:
    for name in STEP_PROCESS_IMPORTS:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    # Settings that cannot load fail in the step's own process, which names them as usual.
    with contextlib.suppress(Exception):
        from ml_assets.definitions import defs

        defs()


_warm_up()
gc.freeze()
