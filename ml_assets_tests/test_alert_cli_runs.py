"""Failures of runs started outside any code location are announced: a real
`dagster asset materialize` child whose run fails, then `run_failure_alert` evaluated on that
instance, sending to a real JSON webhook on 127.0.0.1."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from ml_assets.resources.notifier import Notifier
from ml_assets.sensors.alerts import run_failure_alert
from ml_assets_tests.alert_receivers import WebhookServer, webhook_server
from ml_assets_tests.conftest import local_instance
from ml_assets_tests.http_fixtures import FileServer

UI = "http://dagster.example:3000"
DAY = "2021-01-05"
MONTH_FILE = "/green_tripdata_2021-01.parquet"


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    with webhook_server() as server:
        yield server


def tick(instance: dg.DagsterInstance, notifier: Notifier, cursor: str | None) -> str | None:
    """One evaluation of `run_failure_alert` from `cursor`, as the daemon runs it; the new cursor.

    The daemon evaluates a sensor in its code location's repository; Dagster's run status
    sensors skip runs of another origin (a CLI run has none), so the test names it too.
    """
    defs = dg.Definitions(sensors=[run_failure_alert])
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"notifier": notifier},
        definitions=defs,
        repository_name=defs.get_repository_def().name,
    )
    return run_failure_alert.evaluate_tick(context).cursor


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "job"),
    [
        (
            ["asset", "materialize", "--select", "raw_trips", "--partition", DAY],
            "materialize raw_trips",
        ),
        (
            [
                "job",
                "execute",
                "-j",
                "ingestion_job",
                "--tags",
                f'{{"dagster/partition": "{DAY}"}}',
            ],
            "ingestion_job",
        ),
    ],
    ids=["dagster asset materialize", "dagster job execute"],
)
def test_a_run_failing_under_the_dagster_cli_is_announced_once(
    command: list[str],
    job: str,
    tmp_path: Path,
    local_dagster_env: dict[str, str],
    tlc_server: FileServer,
    webhook: WebhookServer,
) -> None:
    home = Path(local_dagster_env["DAGSTER_HOME"])
    # The TLC stand-in publishes nothing: every month file answers 404.
    environment = {
        **local_dagster_env,
        "ML_ASSETS_SOURCE": "tlc",
        "ML_ASSETS_TLC_BASE_URL": tlc_server.base_url,
        "ML_ASSETS_TLC_ZONE_LOOKUP_URL": tlc_server.url("/taxi_zone_lookup.csv"),
    }
    notifier = Notifier(urls=f"json://{webhook.base_url}/alerts", ui_url=UI, backoff_seconds=0)
    with local_instance(home) as instance:
        first = tick(instance, notifier, None)  # turned on before the run: starts from now
    assert webhook.posts == []

    completed = subprocess.run(
        [sys.executable, "-m", "dagster", *command, "-m", "ml_assets.definitions"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=400,
        start_new_session=True,
    )
    assert completed.returncode != 0
    assert tlc_server.requests_for(MONTH_FILE), completed.stderr[-3000:]

    with local_instance(home) as instance:
        (run,) = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
        second = tick(instance, notifier, first)
        (payload,) = webhook.payloads("/alerts")
        assert payload["title"] == f"❌ {job} [{DAY}] failed"
        assert payload["type"] == "failure"
        assert payload["message"].splitlines() == [
            f"**Job:** {job}",
            f"**Partition:** {DAY}",
            "**Failed step:** raw_trips",
            "**Error:** ml_assets.lib.tlc_errors.MonthNotPublishedError: "
            f"{tlc_server.url(MONTH_FILE)} does not exist (HTTP 404): TLC has not "
            "published this file yet, or the taxi type or month is wrong",
            f"**Run:** {run.run_id}",
            f"**In Dagster:** {UI}/runs/{run.run_id}",
        ]

        tick(instance, notifier, second)
        assert len(webhook.posts) == 1
