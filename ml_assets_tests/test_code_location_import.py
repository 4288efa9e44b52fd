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


def test_keying_trips_imports_neither_pandas_nor_pyarrow(tmp_path: Path) -> None:
    # The ingestion step reads and keys every trip with polars alone; pandas and pyarrow (about
    # 0.3 s to import) are for the steps that check, train and score.
    printed = _printed_by_a_fresh_process(
        "import sys\n"
        "from datetime import datetime\n"
        "import polars as pl\n"
        "from ml_assets.lib.trip_schema import normalize_trips\n"
        "raw = pl.DataFrame({'lpep_pickup_datetime': [datetime(2021, 1, 5, 7)],\n"
        "    'lpep_dropoff_datetime': [datetime(2021, 1, 5, 7, 20)], 'PULocationID': [74],\n"
        "    'DOLocationID': [75], 'trip_distance': [2.5], 'store_and_fwd_flag': ['N'],\n"
        "    'passenger_count': [None]})\n"
        "trips = normalize_trips(raw, taxi_type='green', source_name='f.parquet')\n"
        "print(len(trips['trip_key'][0]), *(m for m in ('pandas', 'pyarrow') if m in sys.modules))\n",
        cwd=tmp_path,
    )
    assert printed == ["32"]
