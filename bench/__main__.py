"""`python -m bench [CASE] [--json PATH] [--repeat N] [--tiny] [--days N]`: run the benchmark cases.

Every case prints a markdown table of what it compared, the medians and ratios, and its goals,
saying MISSED plainly when one is not met. Comparisons are measured side by side in the same run
(the machine may be shared and noisy), so read the ratios rather than the seconds.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import BenchContext, CaseResult, CaseSkipped, render_markdown, write_json

CASES = ("features", "model", "daily", "backfill", "models", "scale", "peers")


def run_case(name: str, context: BenchContext) -> CaseResult:
    module = importlib.import_module(f"bench.{name}")
    try:
        return module.run(context)
    except CaseSkipped as skipped:
        return CaseResult(case=name, title="skipped", compared="", columns=[], skipped=str(skipped))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("case", nargs="?", choices=CASES, help="one case (default: all of them)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    parser.add_argument("--repeat", type=int, default=3, help="repeats per measurement (median)")
    parser.add_argument(
        "--tiny", action="store_true", help="tiny synthetic inputs: checks the cases run, no more"
    )
    parser.add_argument(
        "--days", type=int, help="days a case covers, for cases that take a count (models)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work folder (instances, data) afterwards"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.days is not None and args.days < 1:
        parser.error("--days must be at least 1")
    work_dir = Path(tempfile.mkdtemp(prefix="ml_assets_bench_"))
    context = BenchContext(repeat=args.repeat, tiny=args.tiny, work_dir=work_dir, days=args.days)
    results: list[CaseResult] = []
    try:
        for name in [args.case] if args.case else CASES:
            started = time.perf_counter()
            result = run_case(name, context)
            results.append(result)
            print(render_markdown(result), flush=True)
            print(f"({name}: {time.perf_counter() - started:.0f} s)\n", file=sys.stderr)
            if args.json:
                write_json(results, args.json, context)
    finally:
        if args.keep:
            print(f"work folder kept: {work_dir}", file=sys.stderr)
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    missed = [goal for result in results for goal in result.goals if not goal.met]
    skipped = [result.case for result in results if result.skipped]
    summary = f"{len(missed)} goal(s) missed" if missed else "no goal missed"
    print(summary + (f"; skipped: {', '.join(skipped)}" if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
