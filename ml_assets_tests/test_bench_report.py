"""`python -m bench.report`: the performance page is generated from bench JSON, never pasted."""

import json
from pathlib import Path
from typing import Any

import pytest

from bench import report


def bench_json(
    path: Path,
    generated_at: str,
    *,
    speedup: float = 6.54,
    met: bool = True,
    tiny: bool = False,
    case: str = "features",
) -> Path:
    """A small file in the shape `python -m bench --json` writes (bench/harness.py `write_json`)."""
    document: dict[str, Any] = {
        "generated_at": generated_at,
        "python": "3.11.7",
        "cpus": 2,
        "repeat": 3,
        "tiny": tiny,
        "cases": {
            case: {
                "case": case,
                "title": "feature preparation",
                "compared": "pandas and polars",
                "columns": ["implementation", "rows Jan", "median s", "runs s", "speed-up"],
                "rows": [
                    {
                        "implementation": "course pandas",
                        "rows Jan": 73908,
                        "median s": 0.661,
                        "runs s": "0.66 / 0.66",
                        "speed-up": 1.0,
                    },
                    {
                        "implementation": "project polars",
                        "rows Jan": 73846,
                        "median s": 0.101,
                        "runs s": "0.13 / 0.10",
                        "speed-up": speedup,
                    },
                    {"implementation": "filter only", "rows Jan": 73908},
                ],
                "goals": [
                    {
                        "description": "at least 5x faster",
                        "measured": f"{speedup:.1f}x",
                        "met": met,
                        "verdict": "met" if met else "MISSED",
                    }
                ],
                "notes": ["polars drops more rows"],
                "skipped": None,
            }
        },
    }
    path.write_text(json.dumps(document))
    return path


def test_a_json_fixture_becomes_the_case_table_goal_table_and_provenance(tmp_path: Path) -> None:
    run = report.load_run(bench_json(tmp_path / "run.json", "2026-12-02T13:18:45+0000"))

    page = report.render_page([run], intro="# Performance\n", analysis="## Reading\n")

    assert page.startswith(report.HEADER + "\n\n# Performance\n")
    assert (
        "| implementation | rows Jan | median s | runs s | speed-up |\n"
        "|---|---:|---:|---:|---:|\n"
        "| course pandas | 73,908 | 0.661 | 0.66 / 0.66 | 1.00 |\n"
        "| project polars | 73,846 | 0.101 | 0.13 / 0.10 | 6.54 |\n"
        "| filter only | 73,908 | - | - | - |\n"
    ) in page
    assert (
        "| case | goal | measured | verdict |\n"
        "|---|---|---|---|\n"
        "| features | at least 5x faster | 6.5x | **met** |\n"
    ) in page
    assert (
        f"| `{tmp_path / 'run.json'}` | 2026-12-02 13:18 +0000 | features | 3.11.7 | 2 | 3 | - |"
    ) in page
    assert "### features: feature preparation\n\nRecorded 2026-12-02 13:18 +0000 in `" in page
    assert "- Goal: at least 5x faster. Measured: 6.5x. **met**\n" in page
    assert "- Note: polars drops more rows\n" in page
    assert "## Earlier runs" not in page


def test_the_newest_run_of_a_case_is_shown_older_goals_are_listed_tiny_runs_left_out(
    tmp_path: Path,
) -> None:
    older = bench_json(tmp_path / "old.json", "2026-11-29T19:16:29+0000", speedup=6.54)
    newer = bench_json(tmp_path / "new.json", "2026-12-02T13:18:45+0000", speedup=4.2, met=False)
    tiny = bench_json(tmp_path / "tiny.json", "2026-12-03T08:00:00+0000", speedup=1.1, tiny=True)

    page = report.render_page([report.load_run(path) for path in (older, newer, tiny)])

    assert "| features | at least 5x faster | 4.2x | **MISSED** |" in page
    assert "| project polars | 73,846 | 0.101 | 0.13 / 0.10 | 4.20 |" in page
    earlier = page.split("## Earlier runs", 1)[1]
    assert "| features | 2026-11-29 19:16 +0000 | at least 5x faster | 6.5x | met |" in earlier
    assert "1.1x" not in page
    assert "tiny.json" not in page


def test_a_file_that_is_not_bench_json_is_named_with_what_is_missing(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"cases": {}}))

    with pytest.raises(report.ReportInputError, match=r"broken\.json: missing key 'generated_at'"):
        report.load_run(broken)


def test_check_fails_on_a_stale_page_and_passes_once_regenerated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = str(bench_json(tmp_path / "run.json", "2026-12-02T13:18:45+0000"))
    page = tmp_path / "performance.md"
    page.write_text("# Performance\n\npasted by hand\n")

    assert report.main([source, "--output", str(page), "--check"]) == 1
    assert "is not what `python -m bench.report` generates" in capsys.readouterr().err
    assert report.main([source, "--output", str(page)]) == 0
    assert "| features | at least 5x faster | 6.5x | **met** |" in page.read_text()
    assert report.main([source, "--output", str(page), "--check"]) == 0


def test_the_published_performance_page_is_generated_from_the_recorded_runs() -> None:
    assert report.main(["--check"]) == 0, "run `python -m bench.report` and commit docs/"
