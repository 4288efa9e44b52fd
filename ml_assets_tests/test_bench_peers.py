"""`python -m bench peers --tiny`: ml_assets and Prefect score a day and backfill 3 synthetic days.

Real things throughout: the bench builds (or reuses) its own Prefect environment from PyPI, starts
`prefect server` and `dagster dev` on loopback and runs the flows and the `dagster` CLI. Nothing
is timed here; the test checks that every way ran, that Prefect's re-run came from its cache and
that everyone wrote the same trips.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.harness import CaseSkipped
from bench.prefect_env import PREFECT_VERSION, PrefectEnv, pip_configuration, uv_index_options

REPO_ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["work", "how", "median s", "runs s", "vs script", "vs ml_assets CLI", "output"]
WAYS = {
    "ml_assets: dagster CLI, in-process",
    "ml_assets: dagster dev, launchRun",
    f"Prefect {PREFECT_VERSION}: ephemeral (default)",
    f"Prefect {PREFECT_VERSION}: prefect server on loopback",
    "plain script",
}


PIP_CONFIG_LIST = """\
:env:.find-links='/opt/wheels-from-variable'
:env:.cert='/etc/ssl/certs/company.pem'
global.index-url='https://mirror.example/simple'
global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'
global.find-links='/opt/wheels'
global.constraint='/etc/xdg/pip/constraints.txt'
global.default-timeout='180'
"""


def test_uv_installs_from_the_indexes_pip_is_configured_with() -> None:
    settings = pip_configuration(PIP_CONFIG_LIST)

    # As in pip, the PIP_* variable wins over the file.
    assert settings["find-links"] == "/opt/wheels-from-variable"
    assert settings["cert"] == "/etc/ssl/certs/company.pem"
    assert uv_index_options(settings) == [
        *("--index-strategy", "unsafe-best-match"),
        *("--index-url", "https://mirror.example/simple"),
        *("--extra-index-url", "file:///opt/pypi/simple"),
        *("--extra-index-url", "file:///opt/pypi-more/simple"),
        *("--find-links", "/opt/wheels-from-variable"),
        *("--constraint", "/etc/xdg/pip/constraints.txt"),
    ]
    assert uv_index_options(pip_configuration("")) == ["--index-strategy", "unsafe-best-match"]


@pytest.fixture(scope="module")
def prefect_env() -> PrefectEnv:
    try:
        return PrefectEnv.ensure()
    except CaseSkipped as unavailable:
        pytest.skip(f"the bench's Prefect environment cannot be built here: {unavailable}")


@pytest.mark.slow
def test_peers_case_runs_every_way_and_everyone_writes_the_same_trips(
    prefect_env: PrefectEnv, tmp_path: Path
) -> None:
    json_path = tmp_path / "bench.json"

    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "peers",
            "--tiny",
            "--repeat",
            "1",
            "--json",
            str(json_path),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )

    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "| " + " | ".join(COLUMNS) + " |" in finished.stdout
    result = json.loads(json_path.read_text())["cases"]["peers"]
    assert result["skipped"] is None
    assert result["columns"] == COLUMNS
    rows = {(row["work"], row["how"]): row for row in result["rows"]}
    works = ["scoring 2021-01-03", "backfill of 3 days, first run"]
    works.append("backfill of 3 days, re-run over unchanged inputs")
    for work in works:
        assert {how for (label, how) in rows if label == work} >= WAYS, work
    # The backfill through the daemon as the UI launches it, first run and re-run.
    for work in works[1:]:
        assert (work, "ml_assets: dagster dev, launchPartitionBackfill (daemon, run queue)") in rows
    # Prefect's first runs computed; its re-runs took all 6 task results (3 days x 2) from its cache.
    for mode in ("ephemeral (default)", "prefect server on loopback"):
        how = f"Prefect {PREFECT_VERSION}: {mode}"
        assert rows[(works[0], how)]["output"].endswith("0 task runs cached"), rows[(works[0], how)]
        assert rows[(works[1], how)]["output"].endswith("0 task runs cached")
        assert rows[(works[2], how)]["output"].endswith(" 6 task runs cached")
    goals = {goal["description"]: goal for goal in result["goals"]}
    same = [goal for description, goal in goals.items() if "the same trips" in description]
    assert len(same) == 2
    assert all(goal["met"] for goal in same), same
    # Every pairing of ml_assets with Prefect has its goal, verdict printed.
    assert len(goals) == 2 + 3 * 2 * 2
    for goal in result["goals"]:
        assert goal["verdict"] == ("met" if goal["met"] else "MISSED")
        assert f"**{goal['verdict']}**" in finished.stdout
    assert "load average" in " ".join(result["notes"])
