"""Sends alerts through Apprise: Slack, Microsoft Teams, Discord, e-mail, JSON webhooks and more,
each configured by one URL (https://github.com/caronc/apprise/wiki).
"""

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg
import tenacity
from pydantic import Field

if TYPE_CHECKING:
    # Apprise loads its plugins on import; it is imported where a message is sent, not by every
    # process that loads the code location.
    import apprise

from ml_assets.lib.notifications import Notification

NOTIFY_URLS_ENV_VAR = "ML_ASSETS_NOTIFY_URLS"

MAX_BACKOFF_SECONDS = 60.0
"""No wait between two attempts is longer than this, however many attempts are configured."""

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
    max_attempts: int = Field(
        default=3, ge=1, description="Attempts per channel before the message is dropped."
    )
    backoff_seconds: float = Field(
        default=1.0,
        ge=0,
        description=(
            "Delay before the second attempt, plus up to half of it at random; doubles with "
            f"every attempt, up to {MAX_BACKOFF_SECONDS:.0f}s."
        ),
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
        services = iter([service])

        def attempt() -> bool:
            # A fresh instance after the first: Apprise throttles repeated sends of one instance.
            current = next(services, None) or _service(url, asset)
            return bool(
                current.notify(
                    body=notification.body,
                    title=notification.title,
                    notify_type=apprise.NotifyType(notification.level.value),
                    body_format=apprise.NotifyFormat.MARKDOWN,
                )
            )

        def before_sleep(state: tenacity.RetryCallState) -> None:
            outcome = state.outcome
            # The type only: an exception's text may hold the channel's URL, secrets included.
            failed = outcome is not None and outcome.failed
            why = f"raised {type(outcome.exception()).__name__}" if failed else "failed"
            delay = state.next_action.sleep if state.next_action else 0.0
            log.warning(
                f"{channel}: attempt {state.attempt_number} {why}; retrying in {delay:.2f}s"
            )

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts),
            # Doubling delays with up to 50% random extra, so channels shared by several sensors
            # are not hit again in lockstep.
            wait=tenacity.wait_exponential(multiplier=self.backoff_seconds, max=MAX_BACKOFF_SECONDS)
            + tenacity.wait_random(0, self.backoff_seconds / 2),
            # An Apprise plugin may raise instead of returning False: retried the same way, and
            # never raised into the sensor tick.
            retry=tenacity.retry_if_result(lambda delivered: not delivered)
            | tenacity.retry_if_exception_type(Exception),
            before_sleep=before_sleep,
            retry_error_callback=lambda state: False,
        )
        if retrying(attempt):
            return Delivery(
                channel=channel, delivered=True, attempts=retrying.statistics["attempt_number"]
            )
        log.error(
            f"{channel}: not delivered after {self.max_attempts} attempts; "
            f"dropped: {notification.title}"
        )
        return Delivery(channel=channel, delivered=False, attempts=self.max_attempts)
