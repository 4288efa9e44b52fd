"""Loading the code location stays cheap: every Dagster process (CLI, run worker, step) does it."""

import subprocess
import sys
from pathlib import Path

HEAVY = ("mlflow", "dagster_mlflow", "sklearn", "pandera", "pandas", "numpy", "pyarrow", "apprise")
"""Each of these takes a tenth of a second to a second to import; only some steps need them."""


def _printed_by_a_fresh_process(code: str, cwd: Path) -> list[str]:
    """What `code` prints, run by a new Python process in `cwd`."""
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=True
    )
    return loaded.stdout.split()


def test_loading_the_definitions_imports_none_of_the_heavy_libraries(
    tmp_path: Path,
) -> None:
    printed = _printed_by_a_fresh_process(
        "import sys, ml_assets.definitions; "
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))",
        cwd=tmp_path,  # not the repo root, whose .env a developer may have filled
    )
    assert printed == []


def test_loading_the_code_location_freezes_nothing(tmp_path: Path) -> None:
    # Importing ml_assets.fork_server freezes the garbage collector's view of the process: only
    # the fork server may do that, never a process that merely loads the definitions.
    printed = _printed_by_a_fresh_process(
        "import gc, sys\n"
        "import ml_assets.definitions as location\n"
        "location.defs()\n"
        "print('ml_assets.fork_server' in sys.modules, gc.get_freeze_count())\n",
        cwd=tmp_path,
    )
    assert printed == ["False", "0"]
