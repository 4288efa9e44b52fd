"""The benchmark suite runs: every case on tiny synthetic inputs (nothing here is timed)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

EXPECTED_COLUMNS = {
    "features": ["implementation", "rows Jan", "rows Feb", "median s", "runs s", "speed-up"],
    "model": [
        "model",
        "train rows",
        "validation rows",
        "RMSE",
        "fit median s",
        "fit runs s",
        "fit CPU s",
    ],
    "daily": ["how", "median s", "runs s", "vs script"],
    "backfill": [
        "how",
        "wall s",
        "wall vs script",
        "work s",
        "work vs script",
        "runs (wall s)",
        "feature rows",
    ],
    "scale": [
        "trips",
        "feature rows",
        "raw s",
        "features s",
        "training s",
        "total s",
        "CPU s",
        "CPU s per M trips",
        "vs smallest",
        "peak GiB",
    ],
}


def run_bench(case: str, json_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", case, "--tiny", "--repeat", "1", "--json", str(json_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.parametrize("case", list(EXPECTED_COLUMNS))
def test_case_prints_its_table_and_writes_its_figures(case: str, tmp_path: Path) -> None:
    json_path = tmp_path / "bench.json"

    finished = run_bench(case, json_path)

    assert finished.returncode == 0, finished.stderr[-3000:]
    header = "| " + " | ".join(EXPECTED_COLUMNS[case]) + " |"
    assert header in finished.stdout
    assert "Goal:" in finished.stdout
    document = json.loads(json_path.read_text())
    assert document["tiny"] is True
    result = document["cases"][case]
    assert result["skipped"] is None
    assert result["columns"] == EXPECTED_COLUMNS[case]
    assert result["rows"], "the case measured nothing"
    for goal in result["goals"]:
        assert goal["verdict"] == ("met" if goal["met"] else "MISSED")
        assert f"**{goal['verdict']}**" in finished.stdout


def test_unknown_case_is_refused_with_the_list_of_cases(tmp_path: Path) -> None:
    finished = run_bench("nonsense", tmp_path / "bench.json")

    assert finished.returncode == 2
    assert "features" in finished.stderr and "scale" in finished.stderr
