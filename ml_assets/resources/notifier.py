"""Sends alerts through Apprise: Slack, Microsoft Teams, Discord, e-mail, JSON webhooks and more,
each configured by one URL (https://github.com/caronc/apprise/wiki).
"""

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

if TYPE_CHECKING:
    # Apprise loads its plugins on import; it is imported where a message is sent, not by every
    # process that loads the code location.
    import apprise

from ml_assets.lib.notifications import Notification

NOTIFY_URLS_ENV_VAR = "ML_ASSETS_NOTIFY_URLS"

_SLACK_PREFIXES = ("slack://", "https://hooks.slack.com/", "https://hooks.slack-gov.com/")


# Apprise and urllib3 log full request URLs, webhook tokens included, at DEBUG level.
_URL_LOGGING_LOGGERS = ("apprise", "urllib3.connectionpool")


class _DropDebug(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.INFO


@contextlib.contextmanager
def _no_url_debug_logs() -> Iterator[None]:
    """While sending, drop the DEBUG lines that would print a channel's URL with its secrets."""
    drop = _DropDebug()
    loggers = [logging.getLogger(name) for name in _URL_LOGGING_LOGGERS]
    for logger in loggers:
        logger.addFilter(drop)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(drop)


def _service(url: str, asset: "apprise.AppriseAsset") -> Any:
    import apprise

    return apprise.Apprise.instantiate(url, asset=asset)


@dataclass(frozen=True)
class Delivery:
    """How sending one notification to one channel went. `channel` is the URL with its secrets
    masked, safe to log."""

    channel: str
    delivered: bool
    attempts: int


def _with_slack_blocks(url: str) -> str:
    """Slack messages are sent as Block Kit (header, body, footer) unless the URL says otherwise."""
    if not url.startswith(_SLACK_PREFIXES) or "blocks=" in url:
        return url
    return f"{url}{'&' if '?' in url else '?'}blocks=yes"


class Notifier(dg.ConfigurableResource):
    """Delivers alert messages to every configured Apprise URL, retrying each with backoff.

    Sending never raises: a channel that stays unreachable is logged (with its secrets masked) and
    skipped, so an outage of a chat service cannot fail a sensor or a pipeline. With no URL
    configured, each message is logged in one line and nothing is sent.
    """

    urls: str = Field(
        default="",
        description=(
            "Apprise URLs, separated by commas or spaces, e.g. `slack://T/B/C/#alerts`, "
            "`json://host:port/path`, `mailto://user:password@smtp.example.com?to=team@example.com`."
            f" Set it through `dg.EnvVar('{NOTIFY_URLS_ENV_VAR}')`: the URLs hold secrets."
        ),
    )
    ui_url: str = Field(
        default="http://127.0.0.1:3000",
        description="Base URL of the Dagster UI, for the run links in messages.",
    )
    max_attempts: int = Field(default=3, description="Attempts per channel before giving up.")
    backoff_seconds: float = Field(
        default=1.0, description="Delay before the second attempt; doubles with every attempt."
    )

    def channels(self) -> list[str]:
        from apprise.utils.parse import parse_urls

        return [_with_slack_blocks(url) for url in parse_urls(self.urls)]

    def send(self, notification: Notification, log: logging.Logger | None = None) -> list[Delivery]:
        """Send `notification` to every channel; one `Delivery` per channel."""
        log = log or dg.get_dagster_logger()
        channels = self.channels()
        if not channels:
            log.info(
                f"no notification channel configured ({NOTIFY_URLS_ENV_VAR} is empty); "
                f"not sent: {notification.title}"
            )
            return []
        import apprise

        asset = apprise.AppriseAsset(app_id="ml_assets", app_desc="ml_assets alerts")
        with _no_url_debug_logs():
            return [self._deliver(url, notification, asset, log) for url in channels]

    def _deliver(
        self,
        url: str,
        notification: Notification,
        asset: "apprise.AppriseAsset",
        log: logging.Logger,
    ) -> Delivery:
        import apprise

        service = _service(url, asset)
        if service is None:
            # Apprise could not parse it; only the scheme is shown, the rest may hold secrets.
            scheme = url.split("://", 1)[0] if "://" in url else "(no scheme)"
            log.warning(f"notification channel with scheme {scheme!r} is not a valid Apprise URL")
            return Delivery(channel=f"{scheme}://…", delivered=False, attempts=0)
        channel = service.url(privacy=True)
        for attempt in range(1, self.max_attempts + 1):
            if attempt > 1:
                # A fresh instance: Apprise throttles repeated sends of one instance by seconds.
                service = _service(url, asset)
            if service.notify(
                body=notification.body,
                title=notification.title,
                notify_type=apprise.NotifyType(notification.level.value),
                body_format=apprise.NotifyFormat.MARKDOWN,
            ):
                return Delivery(channel=channel, delivered=True, attempts=attempt)
            if attempt < self.max_attempts:
                delay = self.backoff_seconds * 2 ** (attempt - 1)
                log.warning(f"{channel}: attempt {attempt} failed; retrying in {delay:.1f}s")
                time.sleep(delay)
        log.error(
            f"{channel}: not delivered after {self.max_attempts} attempts; "
            f"dropped: {notification.title}"
        )
        return Delivery(channel=channel, delivered=False, attempts=self.max_attempts)
