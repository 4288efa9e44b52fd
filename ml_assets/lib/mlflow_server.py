"""Reaching an MLflow tracking server: a bounded reachability check and bounded client retries.

MLflow's HTTP client retries a failed request 7 times with a backoff factor of 2 and waits up to
120 s for each answer (`MLFLOW_HTTP_REQUEST_MAX_RETRIES`, `MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR`,
`MLFLOW_HTTP_REQUEST_TIMEOUT`): a server that is down or never answers holds a step for many
minutes without a word. `check_tracking_server` asks the server's `/health` once, retrying for at
most a deadline, and fails with one message naming `MLFLOW_TRACKING_URI`, its value and what
happened; `bound_client_retries` lowers MLflow's own retries for the calls that follow, unless
the user set them.
"""

from __future__ import annotations

import os
import time
from collections.abc import MutableMapping
from http import HTTPStatus
from urllib.parse import urlsplit

import requests
import tenacity

from ml_assets.lib.setting_values import redact_url

TRACKING_URI_VARIABLE = "MLFLOW_TRACKING_URI"

CLIENT_RETRY_DEFAULTS: dict[str, str] = {
    # 3 retries 1, 2 and 4 s apart, 30 s per answer: a call fails within about two minutes at
    # worst instead of about 20, and a server restarting for a few seconds is still waited for.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
"""MLflow client settings used for a step unless the environment sets them."""

DEFAULT_DEADLINE_SECONDS = 30.0
"""How long `check_tracking_server` waits for a server to answer, retries included."""

# Statuses a server gives while it is starting, overloaded or behind a proxy whose upstream is
# down: worth asking again until the deadline, and a failure if they last.
_UNAVAILABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class TrackingServerUnavailable(ConnectionError):
    """The MLflow tracking server did not answer in time (refused, timed out or answered 5xx).

    A server that is down may come back: this is a transient error, which a step's retry policy
    retries.
    """


def is_server_uri(uri: str) -> bool:
    """Whether `uri` names a tracking server over HTTP(S), rather than a local store."""
    return urlsplit(uri).scheme in ("http", "https")


def bound_client_retries(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set MLflow's HTTP retry settings to `CLIENT_RETRY_DEFAULTS` where `environ` leaves them unset.

    MLflow reads them on every request, so this is called when a step's resources start (never at
    import). Returns the values in effect.
    """
    env = os.environ if environ is None else environ
    return {name: env.setdefault(name, value) for name, value in CLIENT_RETRY_DEFAULTS.items()}


def _what_happened(error: BaseException, timeout: float) -> str:
    """A few words for a failed probe: refused, timed out, host not found, HTTP status."""
    if isinstance(error, _UnavailableStatus):
        return str(error)
    if isinstance(error, requests.Timeout):
        return f"no answer within {timeout:.3g} s (the connection was accepted or is hanging)"
    text = str(error)
    if "Connection refused" in text or "ConnectionRefusedError" in text:
        return "connection refused (nothing listens there)"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "host not found"
    return f"{type(error).__name__}: {text}"


class _UnavailableStatus(Exception):
    def __init__(self, status: int) -> None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        super().__init__(f"answered HTTP {status} {phrase}".rstrip())


def check_tracking_server(uri: str, deadline_seconds: float = DEFAULT_DEADLINE_SECONDS) -> None:
    """Ask the tracking server at `uri` for `/health` until it answers or `deadline_seconds` pass.

    Any answer other than a 5xx, 408 or 429 counts as reachable: a proxy without a `/health`
    route or a server asking for credentials is there, and the MLflow calls that follow report
    their own errors. A local store (`sqlite:`, a path) is not checked. Raises
    `TrackingServerUnavailable` naming `MLFLOW_TRACKING_URI`, its value and what happened.
    """
    if not is_server_uri(uri):
        return
    url = f"{uri.rstrip('/')}/health"
    started = time.monotonic()
    last_timeout = deadline_seconds

    def probe() -> None:
        nonlocal last_timeout
        # One request never outlives the deadline; a few seconds are enough for /health.
        remaining = deadline_seconds - (time.monotonic() - started)
        last_timeout = max(0.1, min(10.0, remaining))
        try:
            # SSL settings (MLFLOW_TRACKING_INSECURE_TLS, a private CA) are MLflow's business: a
            # TLS failure still means a server answered, so it is not treated as unreachable.
            response = requests.get(url, timeout=last_timeout, allow_redirects=False)
        except requests.exceptions.SSLError:
            return
        if response.status_code in _UNAVAILABLE_STATUSES:
            raise _UnavailableStatus(response.status_code)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type((requests.RequestException, _UnavailableStatus)),
        # Quick first retries (a server starting up), never a wait past the deadline.
        wait=tenacity.wait_exponential(multiplier=0.25, max=4.0),
        stop=tenacity.stop_before_delay(deadline_seconds),
        reraise=True,
    )
    try:
        retrying(probe)
    except (requests.RequestException, _UnavailableStatus) as error:
        attempts = retrying.statistics.get("attempt_number", 1)
        elapsed = time.monotonic() - started
        raise TrackingServerUnavailable(
            f"MLflow tracking server {TRACKING_URI_VARIABLE}={redact_url(uri)} is unreachable: "
            f"{_what_happened(error, last_timeout)} (GET {redact_url(url)}, {attempts} attempt(s) "
            f"in {elapsed:.1f} s, deadline {deadline_seconds:g} s). Start the server, or point "
            f"{TRACKING_URI_VARIABLE} at one that runs (unset, ml_assets uses a local store "
            "in the data directory)."
        ) from error
