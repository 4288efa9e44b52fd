"""Loading the code location stays cheap: every Dagster process (CLI, run worker, step) does it."""

import subprocess
import sys
from pathlib import Path

HEAVY = ("mlflow", "dagster_mlflow", "sklearn", "pandera", "pandas", "numpy", "pyarrow", "apprise")
"""Each of these takes a tenth of a second to a second to import; only some steps need them."""


def test_loading_the_definitions_imports_none_of_the_heavy_libraries(
    tmp_path: Path,
) -> None:
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, ml_assets.definitions; "
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))",
        ],
        cwd=tmp_path,  # not the repo root, whose .env a developer may have filled
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.split() == []
