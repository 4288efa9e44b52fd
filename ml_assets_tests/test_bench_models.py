"""`python -m bench models` runs: a two-day walk-forward backfill on `dagster dev` against the script.

Tiny synthetic inputs (the sample source, three-day windows): nothing here is timed, and the
figures it prints measure nothing; the test checks that the case launches the backfill, waits for
it (each day decided in its own run), reads every run back from the instance and reports where the time went.
"""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ml_assets_tests.processes import default_signal_handling

REPO_ROOT = Path(__file__).resolve().parents[1]
DAYS = 2


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_models_case_backfills_two_days_and_attributes_their_time(tmp_path: Path) -> None:
    json_path = tmp_path / "bench.json"
    command = ["models", "--tiny", "--days", str(DAYS), "--repeat", "1", "--json", str(json_path)]

    bench = subprocess.Popen(
        [sys.executable, "-m", "bench", *command],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_signal_handling,
    )
    try:
        stdout, stderr = bench.communicate(timeout=1200)
    except subprocess.TimeoutExpired:
        # Interrupted, the case stops the `dagster dev` it started (its own process group).
        bench.send_signal(signal.SIGINT)
        stdout, stderr = bench.communicate(timeout=120)
        pytest.fail(f"python -m bench models did not finish within 20 minutes:\n{stderr[-3000:]}")

    assert bench.returncode == 0, stderr[-3000:]
    assert "| where | script s/day | Dagster s/day | Dagster - script s/day |" in stdout
    result = json.loads(json_path.read_text())["cases"]["models"]
    assert result["skipped"] is None
    assert "2 days (2021-01-05..2021-01-06)" in result["title"]
    rows = {row["where"]: row for row in result["rows"]}
    total = rows["total, until the backfill completed"]
    assert total["Dagster s/day"] > 0 and total["script s/day"] > 0
    # Every part of a Dagster run was found in the instance: the steps and the runs' starts.
    for where in (
        "train (duration_model steps outside their MLflow runs)",
        "MLflow log + register (the days' MLflow runs in duration_model steps)",
        "evaluate (model_evaluation step)",
        "predict (trip_duration_predictions step)",
        "promote (challenger_validation, its promotion_gate checks, model_promotion)",
        "run process start, imports, code load, run plan",
    ):
        assert rows[where]["Dagster s/day"] > 0, where
        assert rows[where]["script s/day"] > 0, where
    # The CPU time of dagster dev's processes: every run process imported Dagster at least.
    runs = 1 + DAYS
    run_cpu = rows["CPU time of the run processes"]["Dagster s/day"] * DAYS
    assert run_cpu > runs * 0.3
    all_cpu = rows["CPU time, all processes (Dagster: dagster dev's, during the backfill)"]
    assert all_cpu["Dagster s/day"] * DAYS > run_cpu
    assert all_cpu["script s/day"] > 0
    (cpu_note,) = [note for note in result["notes"] if note.startswith("CPU time:")]
    assert f"in its {runs} run processes" in cpu_note
    goals = [goal["description"] for goal in result["goals"]]
    assert goals == [
        "the backfill, its promotions done, within 1.5x the plain script",
        "each day predicted by the same model version as the script (the walk-forward order: "
        "the champion decided before the day)",
    ]
    # One training run for both days, and a run a day that scores, decides and predicts it: the
    # promotion sensor leaves the days to them (the case fails if it launched promotion_job).
    assert result["notes"][0].startswith(f"{1 + DAYS} backfill runs, ")
