"""The wiring of the code location in one reviewed file, so a wiring change shows in review.

`snapshots/definitions.txt` lists every asset (deps and their partition mappings, partitions,
code version, retry and backfill policies, pools), every asset check (blocking or not), job,
schedule and sensor. When a change alters the wiring on purpose, regenerate the file with
`ML_ASSETS_UPDATE_SNAPSHOT=1 pytest ml_assets_tests/test_definitions_snapshot.py` and review the
diff with the change.
"""

import os
from pathlib import Path

import dagster as dg
import pytest

from ml_assets.definitions import build_definitions
from ml_assets.settings import Settings

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.txt"


def _retry(policy: dg.RetryPolicy | None) -> str:
    if policy is None:
        return "none"
    backoff = policy.backoff.value if policy.backoff else "none"
    jitter = policy.jitter.value if policy.jitter else "none"
    return (
        f"{policy.max_retries} retries, delay {policy.delay}s, {backoff} backoff, {jitter} jitter"
    )


def _partitions(partitions_def: dg.PartitionsDefinition | None) -> str:
    if partitions_def is None:
        return "none"
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        return f"{type(partitions_def).__name__}(start={partitions_def.start:%Y-%m-%d})"
    return type(partitions_def).__name__


def _mapping(mapping: dg.PartitionMapping | None) -> str:
    if isinstance(mapping, dg.TimeWindowPartitionMapping):
        return f"days {mapping.start_offset:+d}..{mapping.end_offset:+d}"
    return "same partition" if mapping is None else type(mapping).__name__


def describe(defs: dg.Definitions) -> str:
    """A stable, line-per-fact text of `defs`' wiring."""
    lines: list[str] = []
    for spec in sorted(defs.resolve_all_asset_specs(), key=lambda s: s.key.to_user_string()):
        assets_def = defs.get_assets_def(spec.key)
        lines.append(f"asset {spec.key.to_user_string()}")
        lines.append(f"  group: {spec.group_name}")
        lines.append(f"  partitions: {_partitions(spec.partitions_def)}")
        lines.append(f"  code_version: {spec.code_version}")
        if assets_def.is_executable:
            lines.append(f"  retry: {_retry(assets_def.op.retry_policy)}")
            lines.append(f"  backfill: {assets_def.backfill_policy or 'per partition'}")
            lines.append(f"  pools: {', '.join(sorted(assets_def.op.pools)) or 'none'}")
        else:
            lines.append("  external: observations only, never materialized")
        for dep in sorted(spec.deps, key=lambda d: d.asset_key.to_user_string()):
            lines.append(
                f"  dep {dep.asset_key.to_user_string()}: {_mapping(dep.partition_mapping)}"
            )
    for check in sorted(
        defs.resolve_asset_graph().asset_check_keys, key=lambda c: c.to_user_string()
    ):
        spec = defs.resolve_asset_graph().get_check_spec(check)
        lines.append(
            f"check {check.to_user_string()}: {'blocking' if spec.blocking else 'not blocking'}, "
            f"partitions {_partitions(spec.partitions_def)}"
        )
    for job in sorted(defs.resolve_all_job_defs(), key=lambda j: j.name):
        if job.name.startswith("__"):
            continue
        selection = sorted(key.to_user_string() for key in job.asset_layer.executable_asset_keys)
        tags = ", ".join(f"{k}={v}" for k, v in sorted(job.tags.items()))
        lines.append(f"job {job.name}: {' '.join(selection)}" + (f" [{tags}]" if tags else ""))
    for schedule in sorted(defs.schedules or [], key=lambda s: s.name):
        lines.append(
            f"schedule {schedule.name}: {schedule.cron_schedule} {schedule.execution_timezone} "
            f"-> {schedule.job_name}, {schedule.default_status.value.lower()}"
        )
    for sensor in sorted(defs.sensors or [], key=lambda s: s.name):
        lines.append(
            f"sensor {sensor.name}: every {sensor.minimum_interval_seconds}s, "
            f"{sensor.default_status.value.lower()}"
        )
    return "\n".join(lines) + "\n"


def test_the_wiring_matches_the_reviewed_snapshot() -> None:
    current = describe(build_definitions(Settings.from_env({"ML_ASSETS_SOURCE": "sample"})))
    if os.environ.get("ML_ASSETS_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(current)
    assert current == SNAPSHOT.read_text(), (
        "the definitions changed; if on purpose, regenerate with ML_ASSETS_UPDATE_SNAPSHOT=1 "
        "and review the diff"
    )


def test_definitions_are_built_for_two_settings_in_one_process(tmp_path: Path) -> None:
    first = build_definitions(
        Settings.from_env({"ML_ASSETS_SOURCE": "sample", "ML_ASSETS_DATA_DIR": str(tmp_path / "a")})
    )
    second = build_definitions(
        Settings.from_env(
            {
                "ML_ASSETS_SOURCE": "tlc",
                "ML_ASSETS_DATA_DIR": str(tmp_path / "b"),
                "ML_ASSETS_START_DATE": "2023-06-01",
                "ML_ASSETS_TRAINING_WINDOW_DAYS": "14",
                "ML_ASSETS_RETRAIN_CRON": "0 7 * * 1",
            }
        )
    )
    model = dg.AssetKey("duration_model")
    assert describe(first) == SNAPSHOT.read_text()
    assert "DailyPartitionsDefinition(start=2023-06-01)" in describe(second)
    assert "dep trip_features: days -13..+0" in describe(second)
    assert "schedule training_schedule: 0 7 * * 1 UTC" in describe(second)
    assert first.get_assets_def(model).partitions_def.start.year == 2021
    assert first.resources["trip_source"].source == "sample"
    assert second.resources["trip_source"].source == "tlc"
    assert first.resources["io_manager"].base_dir == str(tmp_path / "a" / "assets")


def test_the_code_location_is_built_once_per_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dagster loads `defs` several times per process: built once, unless the settings change."""
    from ml_assets.definitions import defs

    monkeypatch.setenv("ML_ASSETS_SOURCE", "sample")
    monkeypatch.setenv("ML_ASSETS_DATA_DIR", str(tmp_path / "a"))
    first = defs()
    assert defs() is first
    monkeypatch.setenv("ML_ASSETS_DATA_DIR", str(tmp_path / "b"))
    moved = defs()
    assert moved is not first
    assert moved.resources["io_manager"].base_dir == str(tmp_path / "b" / "assets")
