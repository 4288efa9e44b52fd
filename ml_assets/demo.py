"""`ml-assets-demo`: run the whole daily loop over a short date range, day by day.

    ml-assets-demo                                  # 2021-01-01..2021-01-07, synthetic sample data
    ml-assets-demo --start 2021-01-01 --end 2021-01-31 --source tlc

Runs are recorded in the Dagster instance of DAGSTER_HOME (set up by `scripts/setup`), so
`dagster dev` shows them, their logs and the materialized assets afterwards.
"""

import argparse
import os
import shutil
import sys
from datetime import date, timedelta
from pathlib import Path

from dotenv import load_dotenv

REPO_ROOT = Path(__file__).resolve().parents[1]


def _days(start: date, end: date) -> list[str]:
    if end < start:
        raise SystemExit(f"--end {end} is before --start {start}")
    return [(start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


def _ensure_dagster_home() -> None:
    if os.environ.get("DAGSTER_HOME"):
        return
    home = (REPO_ROOT / ".dagster_home").resolve()
    home.mkdir(exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copy(REPO_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)


def load_env_file(folder: Path) -> None:
    """Fill in, from `folder/.env`, the variables the environment leaves unset.

    The one precedence rule of ml_assets: a variable set in the environment wins over `.env`.
    Dagster's CLI loads `.env` over the environment instead, so `scripts/setup` writes each line as
    `NAME=${NAME:-value}`, which python-dotenv expands from the environment first: both agree.
    Command-line options (`--source`) win over both.
    """
    load_dotenv(folder / ".env", override=False)


COLUMNS = (
    ("day", "<12"),
    ("trips", ">7"),
    ("features", ">9"),
    ("trained", ">8"),
    ("scored", ">7"),
    ("RMSE", ">7"),
    ("baseline", ">9"),
    ("champion", ">9"),
    ("served", ">7"),
)
LEGEND = """\
  trips, features: the day's trips, and those kept as features
  trained:  the model trained on the window ending on the day (model D)
  scored:   the model scored on the day's trips: the one trained through the day before (D-1)
  RMSE:     that model's RMSE on the day, in minutes; baseline: the zone-pair mean's, same trips
  champion: the champion after the day's promotion decision (promotion_job: the gate, then
            model_promotion); served: the model that predicted the day (the champion going
            into it, chosen before the day)
"""


def _row(values: list[str]) -> str:
    return "".join(f"{value:{align}}" for value, (_, align) in zip(values, COLUMNS, strict=True))


def _version(value: object) -> str:
    return "-" if value is None else f"v{value}"


def _number(value: object) -> str:
    return "-" if value is None else f"{float(value):.2f}"  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    load_env_file(Path.cwd())
    parser = argparse.ArgumentParser(prog="ml-assets-demo", description=__doc__.split("\n")[0])
    parser.add_argument("--start", type=date.fromisoformat, default=date(2021, 1, 1))
    parser.add_argument("--end", type=date.fromisoformat, default=date(2021, 1, 7))
    parser.add_argument(
        "--source",
        choices=("sample", "tlc"),
        default=os.environ.get("ML_ASSETS_SOURCE", "sample"),
        help="sample: offline synthetic trips (default); tlc: NYC TLC files over HTTP",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also print Dagster's run logs here (they are always in the UI)",
    )
    args = parser.parse_args(argv)
    days = _days(args.start, args.end)
    _ensure_dagster_home()

    import dagster as dg

    from ml_assets.definitions import build_definitions
    from ml_assets.jobs import ml_loop_job, promotion_job
    from ml_assets.settings import Settings, SettingsError

    environment = {
        **os.environ,
        "ML_ASSETS_SOURCE": args.source,
        "ML_ASSETS_START_DATE": os.environ.get("ML_ASSETS_START_DATE")
        or min(args.start.isoformat(), "2021-01-01"),
    }
    try:
        settings = Settings.from_env(environment)
    except SettingsError as error:
        # The one line naming the variable says it all; a traceback would bury it.
        print(f"ml-assets-demo: {error}", file=sys.stderr)
        return 2
    if settings.end_date is not None and args.end.isoformat() > settings.end_date:
        print(
            f"ml-assets-demo: --end {args.end} is after ML_ASSETS_END_DATE={settings.end_date}, "
            "the last day of the partitions",
            file=sys.stderr,
        )
        return 2
    defs = build_definitions(settings)

    # Dagster's logs always go to the instance (the UI shows them); here only with --verbose.
    quiet = {} if args.verbose else {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    instance = dg.DagsterInstance.get()
    zones = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey("taxi_zones")],
        raise_on_error=False,
        run_config=quiet,
    )
    if not zones.success:
        print("taxi_zones failed; see the run in the Dagster UI", file=sys.stderr)
        return 1
    job = defs.resolve_job_def(ml_loop_job.name)
    promotion = defs.resolve_job_def(promotion_job.name)
    print(LEGEND)
    print(_row([name for name, _ in COLUMNS]), flush=True)
    for day in days:
        result = job.execute_in_process(
            instance=instance, partition_key=day, raise_on_error=False, run_config=quiet
        )
        if not result.success:
            print(f"{day}: run {result.run_id} failed; see it in the Dagster UI", file=sys.stderr)
            return 1
        meta = {
            event.asset_key.to_user_string(): {
                key: value.value for key, value in event.materialization.metadata.items()
            }
            for event in result.get_asset_materialization_events()
        }
        evaluation = meta.get("model_evaluation", {})
        predictions = meta.get("trip_duration_predictions", {})
        champion = evaluation.get("champion_version")
        if evaluation:
            # What the `promote_evaluated_day` sensor does under `dagster dev`: the promotion
            # gate, then the decision. A challenger that fails the gate fails that run and
            # leaves the champion where it was; the demo carries on.
            decided = promotion.execute_in_process(
                instance=instance, partition_key=day, raise_on_error=False, run_config=quiet
            )
            for event in decided.get_asset_materialization_events():
                values = event.materialization.metadata
                if "champion_version" in values:
                    champion = values["champion_version"].value
            gate_failed = any(
                not evaluation.passed for evaluation in decided.get_asset_check_evaluations()
            )
            if not decided.success and not gate_failed:
                print(
                    f"{day}: run {decided.run_id} failed; see it in the Dagster UI", file=sys.stderr
                )
                return 1
        row = [
            day,
            str(meta["raw_trips"]["dagster/row_count"]),
            str(meta["trip_features"]["dagster/row_count"]),
            _version(meta["duration_model"]["model_version"]),
            _version(evaluation.get("challenger_version")),
            _number(evaluation.get("rmse")),
            _number(evaluation.get("baseline_rmse")),
            _version(champion),
            _version(predictions.get("model_version")),
        ]
        print(_row(row), flush=True)
    print(f"\nDone. Open the UI with `dagster dev` (DAGSTER_HOME={os.environ['DAGSTER_HOME']}).")
    if settings.end_date is None:
        print(
            f"`ML_ASSETS_END_DATE={args.end} dagster dev` shows these days alone; plain "
            "`dagster dev` shows every day up to today."
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
