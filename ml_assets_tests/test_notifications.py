"""Alert messages as built, and as received by a JSON webhook, Slack (on loopback) and SMTP."""

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from apprise.manager_plugins import NotificationManager
from apprise.plugins.base import NotifyBase
from apprise.plugins.slack import NotifySlack

from ml_assets.lib.notifications import (
    Level,
    Notification,
    failed_check_message,
    model_regression_message,
    run_failure_message,
    run_success_message,
    summarize_error,
)
from ml_assets.resources import build_resources
from ml_assets.resources.notifier import Notifier
from ml_assets.settings import Settings
from ml_assets_tests.alert_receivers import (
    MailServer,
    WebhookServer,
    smtp_server,
    webhook_server,
)
from ml_assets_tests.processes import free_port

UI = "http://dagster.example:3000"
SLACK_TOKENS = "T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7"


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    with webhook_server() as server:
        yield server


@pytest.fixture
def mail() -> Iterator[MailServer]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def slack_on_loopback(webhook: WebhookServer, monkeypatch: pytest.MonkeyPatch) -> WebhookServer:
    """Slack's webhook host is on the internet: point Apprise's Slack plugin at the loopback
    server instead; the payload it builds and posts is otherwise untouched."""
    monkeypatch.setattr(NotifySlack, "webhook_url", f"http://{webhook.base_url}/services")
    return webhook


def failure() -> Notification:
    return run_failure_message(
        job="daily_job",
        run_id="run-123",
        partition="2021-01-05",
        failing_steps=["raw_trips"],
        error="ValueError: green_tripdata_2021-01.parquet: column trip_distance missing\n  at ...",
        ui_url=UI,
    )


def test_failure_message_names_job_partition_step_error_and_link() -> None:
    message = failure()
    assert message.title == "❌ daily_job [2021-01-05] failed"
    assert message.level is Level.failure
    assert message.body.splitlines() == [
        "**Job:** daily_job",
        "**Partition:** 2021-01-05",
        "**Failed step:** raw_trips",
        "**Error:** ValueError: green_tripdata_2021-01.parquet: column trip_distance missing",
        "**Run:** run-123",
        f"**In Dagster:** {UI}/runs/run-123",
    ]


def test_error_summary_keeps_the_first_line_and_cuts_long_ones() -> None:
    assert summarize_error("\n\nKeyError: 'rmse'\nTraceback ...") == "KeyError: 'rmse'"
    long = summarize_error("x" * 1000, limit=50)
    assert len(long) == 50 and long.endswith("…")


def test_success_message_reports_rows_rmse_against_baseline_and_promotion() -> None:
    message = run_success_message(
        job="daily_job",
        run_id="run-9",
        partition="2021-01-06",
        raw_rows=2446,
        feature_rows=2331,
        rmse=4.21,
        baseline_rmse=9.06,
        promoted=True,
        champion_version="3",
        model_version=None,
        ui_url=UI + "/",
    )
    assert message.title == "✅ daily_job [2021-01-06] succeeded"
    assert "**Trips:** 2,446" in message.body
    assert "**Feature rows:** 2,331" in message.body
    assert "**RMSE:** 4.21 min (baseline 9.06, -4.85)" in message.body
    assert "**Champion:** new champion promoted: v3" in message.body
    assert "Model trained" not in message.body
    assert message.body.endswith(f"{UI}/runs/run-9")


def test_success_message_of_a_training_run_names_the_model() -> None:
    message = run_success_message(
        job="training_job",
        run_id="r",
        partition="2021-01-06",
        raw_rows=None,
        feature_rows=None,
        rmse=5.0,
        baseline_rmse=6.5,
        promoted=None,
        champion_version=None,
        model_version="7",
        ui_url=UI,
    )
    assert "**Model trained:** v7" in message.body
    assert "Champion" not in message.body and "Trips" not in message.body


def test_check_and_regression_messages() -> None:
    check = failed_check_message(
        asset="raw_trips",
        check="raw_trips_null_rates",
        partition="2021-01-05",
        severity="WARN",
        description="2021-01-05: trip_distance 5.0% null",
        run_id="r1",
        job="ingestion_job",
        ui_url=UI,
    )
    assert check.title == "⚠️ check raw_trips_null_rates on raw_trips [2021-01-05] failed (WARN)"
    assert check.level is Level.warning
    assert "**Finding:** 2021-01-05: trip_distance 5.0% null" in check.body

    regression = model_regression_message(
        partition="2021-01-09",
        rmse=6.0,
        trailing_mean_rmse=5.0,
        trailing_days=["2021-01-02", "2021-01-08"],
        margin=0.1,
        run_id="r2",
        ui_url=UI,
    )
    assert regression.title == "📉 model quality regression [2021-01-09]: RMSE 6.00 vs 5.00"
    assert "**Worse by:** 20.0% (alert above 10%)" in regression.body
    assert "5.00 min over 2 day(s) (2021-01-02..2021-01-08)" in regression.body


def test_json_webhook_receives_title_body_and_type(webhook: WebhookServer) -> None:
    notifier = Notifier(urls=f"json://{webhook.base_url}/alerts")
    deliveries = notifier.send(failure())
    assert [(d.delivered, d.attempts) for d in deliveries] == [(True, 1)]
    (payload,) = webhook.payloads("/alerts")
    assert payload["title"] == "❌ daily_job [2021-01-05] failed"
    assert payload["type"] == "failure"
    assert "**Failed step:** raw_trips" in payload["message"]
    assert f"{UI}/runs/run-123" in payload["message"]


def test_slack_message_is_built_as_blocks(slack_on_loopback: WebhookServer) -> None:
    notifier = Notifier(urls=f"slack://{SLACK_TOKENS}/#ml-alerts")
    (delivery,) = notifier.send(failure())
    assert delivery.delivered
    # The tokens are masked wherever the channel is shown.
    assert "TIiajkdnlazkcOXrIdevi7" not in delivery.channel
    (payload,) = slack_on_loopback.payloads(f"/services/{SLACK_TOKENS}")
    assert payload["channel"] == "#ml-alerts"
    (attachment,) = payload["attachments"]
    header, section, footer = attachment["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "❌ daily_job [2021-01-05] failed", "emoji": True},
    }
    assert section["type"] == "section"
    assert section["text"]["type"] == "mrkdwn"
    assert section["text"]["text"].splitlines() == [
        "*Job:* daily_job",
        "*Partition:* 2021-01-05",
        "*Failed step:* raw_trips",
        "*Error:* ValueError: green_tripdata_2021-01.parquet: column trip_distance missing",
        "*Run:* run-123",
        f"*In Dagster:* {UI}/runs/run-123",
    ]
    assert footer["type"] == "context"
    assert {"type": "mrkdwn", "text": "ml_assets"} in footer["elements"]


def test_email_is_delivered_over_smtp_with_login(mail: MailServer) -> None:
    notifier = Notifier(
        urls=(
            f"mailto://{mail.user}:{mail.password}@127.0.0.1:{mail.port}"
            "?mode=insecure&from=ml-assets@example.com&to=oncall@example.com"
        )
    )
    (delivery,) = notifier.send(failure())
    assert delivery.delivered
    assert mail.password not in delivery.channel
    assert mail.envelopes == [("ml-assets@example.com", ["oncall@example.com"])]
    (message,) = mail.messages
    assert message["Subject"] == "❌ daily_job [2021-01-05] failed"
    assert message["To"] == "oncall@example.com"
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "Failed step: raw_trips" in text
    assert f"{UI}/runs/run-123" in text
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "<strong>Partition:</strong> 2021-01-05" in html


def test_one_message_reaches_every_channel(webhook: WebhookServer, mail: MailServer) -> None:
    notifier = Notifier(
        urls=(
            f"json://{webhook.base_url}/a, "
            f"mailto://{mail.user}:{mail.password}@127.0.0.1:{mail.port}"
            "?mode=insecure&from=bot@example.com&to=team@example.com"
        )
    )
    assert [d.delivered for d in notifier.send(failure())] == [True, True]
    assert len(webhook.payloads("/a")) == 1
    assert len(mail.messages) == 1


def test_outage_is_retried_with_backoff_then_delivered(webhook: WebhookServer) -> None:
    webhook.fail_next("/flaky", [503, 502])
    notifier = Notifier(urls=f"json://{webhook.base_url}/flaky", backoff_seconds=0.01)
    (delivery,) = notifier.send(failure())
    assert (delivery.delivered, delivery.attempts) == (True, 3)
    assert len(webhook.payloads("/flaky")) == 3


def test_retries_wait_doubling_delays_with_jitter(
    webhook: WebhookServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    webhook.fail_next("/slow", [503, 503])
    notifier = Notifier(urls=f"json://{webhook.base_url}/slow", backoff_seconds=0.2)
    (delivery,) = notifier.send(failure())
    assert (delivery.delivered, delivery.attempts) == (True, 3)
    delays = [float(d) for d in re.findall(r"retrying in ([0-9.]+)s", caplog.text)]
    # 0.2 s then 0.4 s, each plus up to half the base delay at random.
    assert len(delays) == 2
    assert 0.2 <= delays[0] <= 0.3 and 0.4 <= delays[1] <= 0.5


class ExplodingChannel(NotifyBase):
    """An Apprise plugin whose sending raises instead of returning False."""

    service_name = "Exploding"
    protocol = "mlassetsboom"
    sent: list[str] = []

    def send(self, body: str, title: str = "", notify_type: object = None, **kwargs: object):
        ExplodingChannel.sent.append(title)
        raise ConnectionResetError(f"{self.host}: connection reset by peer")

    def url(self, privacy: bool = False, *args: object, **kwargs: object) -> str:
        return f"mlassetsboom://{self.pprint(self.host, privacy, safe='')}"

    @staticmethod
    def parse_url(url: str) -> dict | None:
        return NotifyBase.parse_url(url, verify_host=False)


@pytest.fixture
def exploding_channel() -> Iterator[type[ExplodingChannel]]:
    plugins = NotificationManager()
    plugins.add(ExplodingChannel, schemas="mlassetsboom")
    ExplodingChannel.sent = []
    yield ExplodingChannel
    plugins.remove("mlassetsboom")


def test_a_channel_that_raises_is_retried_then_dropped_never_raised(
    exploding_channel: type[ExplodingChannel], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    notifier = Notifier(urls="mlassetsboom://s3cret-token", backoff_seconds=0.01)
    (delivery,) = notifier.send(failure())
    assert (delivery.delivered, delivery.attempts) == (False, 3)
    assert exploding_channel.sent == ["❌ daily_job [2021-01-05] failed"] * 3
    assert "attempt 1 raised ConnectionResetError" in caplog.text
    assert "not delivered after 3 attempts" in caplog.text
    assert "s3cret-token" not in caplog.text


def test_lasting_outage_is_logged_never_raised_and_leaks_no_secret(
    slack_on_loopback: WebhookServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    slack_on_loopback.fail_next(f"/services/{SLACK_TOKENS}", [500, 500, 500])
    notifier = Notifier(urls=f"slack://{SLACK_TOKENS}/#alerts", backoff_seconds=0.01)
    (delivery,) = notifier.send(failure())
    assert (delivery.delivered, delivery.attempts) == (False, 3)
    assert "not delivered after 3 attempts" in caplog.text
    for token in SLACK_TOKENS.split("/"):
        assert token not in caplog.text


def test_unreachable_mail_server_is_not_delivered_and_the_password_is_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    notifier = Notifier(
        urls=(
            f"mailto://alerts:Pa55-w0rd-x@127.0.0.1:{free_port()}"
            "?mode=insecure&from=bot@example.com&to=team@example.com"
        ),
        max_attempts=2,
        backoff_seconds=0.01,
    )
    (delivery,) = notifier.send(failure())
    assert (delivery.delivered, delivery.attempts) == (False, 2)
    assert "not delivered after 2 attempts" in caplog.text
    assert "Pa55-w0rd-x" not in caplog.text


def test_without_channels_one_line_is_logged_and_nothing_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    assert Notifier(urls="").send(failure()) == []
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "no notification channel configured (ML_ASSETS_NOTIFY_URLS is empty); "
        "not sent: ❌ daily_job [2021-01-05] failed"
    ]


def test_an_invalid_url_is_reported_by_scheme_only(caplog: pytest.LogCaptureFixture) -> None:
    (delivery,) = Notifier(urls="nosuchservice://user:hunter2@example.com").send(failure())
    assert not delivery.delivered
    assert "'nosuchservice' is not a valid Apprise URL" in caplog.text
    assert "hunter2" not in caplog.text


def test_channels_come_from_an_env_var_read_at_run_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, webhook: WebhookServer
) -> None:
    env = {"ML_ASSETS_SOURCE": "sample", "ML_ASSETS_DATA_DIR": str(tmp_path)}
    unset = build_resources(Settings.from_env(env))["notifier"]
    assert unset.urls == ""

    url = f"json://{webhook.base_url}/from-env"
    configured = Settings.from_env({**env, "ML_ASSETS_NOTIFY_URLS": url, "ML_ASSETS_UI_URL": UI})
    notifier = build_resources(configured)["notifier"]
    # The resource holds the variable's name, not its value: the URL is not in any config.
    assert notifier.urls == dg.EnvVar("ML_ASSETS_NOTIFY_URLS")
    assert notifier.ui_url == UI
    monkeypatch.setenv("ML_ASSETS_NOTIFY_URLS", url)
    with dg.build_resources({"notifier": notifier}) as resources:
        (delivery,) = resources.notifier.send(failure())
    assert delivery.delivered
    assert len(webhook.payloads("/from-env")) == 1


@pytest.mark.parametrize(
    ("name", "value"),
    [("ML_ASSETS_RMSE_REGRESSION_MARGIN", "ten"), ("ML_ASSETS_RMSE_TRAILING_DAYS", "0")],
)
def test_alert_settings_are_validated(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"{name}='{value}'"):
        Settings.from_env({name: value})
