"""HTTP calls to the TLC source with timeouts, a total deadline and retries of what may pass.

Every call has a connect timeout, a read timeout (per socket read) and a total deadline across its
attempts; transient failures (timeouts, connection resets, 5xx, 429) are retried with exponential
backoff and jitter (tenacity) until the attempts or the deadline run out. A 404 is a month not
published yet; another 4xx is a refused request; neither is retried. Nothing here catches
`KeyboardInterrupt` or other `BaseException`s: a run told to stop stops.

One module though past 250 lines: the retries, the timeouts and the streamed body share one
deadline, which is easier to keep right in one place.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import requests
import tenacity
import urllib3

from ml_assets.lib.tlc_errors import (
    DeadlineExceededError,
    MonthNotPublishedError,
    RequestRejectedError,
    TransientTLCError,
)

TRANSIENT_STATUS_CODES = frozenset({408, 425, 429, 500, 502, 503, 504})

DEFAULT_CONNECT_TIMEOUT_SECONDS = 10.0
"""How long to wait for a connection to the source."""
DEFAULT_READ_TIMEOUT_SECONDS = 30.0
"""How long to wait for the next bytes of an answer (its headers, or the next part of the body)."""
DEFAULT_DEADLINE_SECONDS = 300.0
"""How long one call (a download, a HEAD) may take in total, all its attempts and waits included.

Large enough for a 50 MB yellow month at about 200 kB/s; a source that answers nothing fails
after `max_attempts` read timeouts (about 1.5 minutes with the defaults) long before it.
"""

_CHUNK_BYTES = 1 << 16

T = TypeVar("T")


@dataclass(frozen=True)
class HttpLimits:
    """How long a call may wait and how often it is tried (see `TripSource` for the settings)."""

    connect_timeout_seconds: float = DEFAULT_CONNECT_TIMEOUT_SECONDS
    read_timeout_seconds: float = DEFAULT_READ_TIMEOUT_SECONDS
    deadline_seconds: float = DEFAULT_DEADLINE_SECONDS
    max_attempts: int = 3
    backoff_seconds: float = 1.0
    """The first wait between attempts; it doubles each attempt, plus up to half of it at random."""

    def __post_init__(self) -> None:
        for name in ("connect_timeout_seconds", "read_timeout_seconds", "deadline_seconds"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be more than 0 seconds, got {value!r}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts!r}")


def with_note(error: T, note: str) -> T:
    """`error` with `note` appended to its message (same class, so it is handled the same way)."""
    assert isinstance(error, BaseException)
    error.args = (f"{error}{note}",)
    return error


def _sleep(seconds: float) -> None:
    # Looked up at call time so tests can record the waits; a signal interrupts it at once.
    time.sleep(seconds)


class TLCHttp:
    """Sends requests to the TLC source within `limits`, retrying what may pass."""

    def __init__(self, limits: HttpLimits, session: requests.Session | None = None) -> None:
        self.limits = limits
        self.session = session or requests.Session()

    def request(
        self,
        method: str,
        url: str,
        *,
        stream: bool = False,
        consume: Callable[[requests.Response, float], object] | None = None,
        max_attempts: int | None = None,
    ) -> requests.Response:
        """One HTTP call, retried with exponential backoff and jitter while errors are transient.

        `max_attempts` overrides the limits' attempts (1: ask once, for a question whose answer
        can wait for the next run).

        `consume(response, deadline)` reads a streamed body inside the same attempt, so a transfer
        cut short (raising `TransientTLCError`) is retried like a failed request. The call stops at
        `max_attempts` attempts or at the deadline (`time.monotonic()` based), whichever is first.
        """
        deadline = time.monotonic() + self.limits.deadline_seconds
        attempts = 0
        last_error: list[BaseException] = []

        def attempt() -> requests.Response:
            nonlocal attempts
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._deadline_error(method, url, attempts, last_error)
            attempts += 1
            try:
                response = self._send(method, url, stream=stream, remaining=remaining)
                if consume is not None:
                    with response:
                        consume(response, deadline)
            except TransientTLCError as error:
                last_error[:] = [error]
                raise
            return response

        def wait(state: tenacity.RetryCallState) -> float:
            base = self.limits.backoff_seconds * 2 ** (state.attempt_number - 1)
            # Never sleep past the deadline: the next attempt then reports it.
            return max(0.0, min(base + random.uniform(0, base / 2), deadline - time.monotonic()))

        retrying = tenacity.Retrying(
            retry=(
                tenacity.retry_if_exception_type(TransientTLCError)
                & tenacity.retry_if_not_exception_type(DeadlineExceededError)
            ),
            stop=tenacity.stop_after_attempt(max_attempts or self.limits.max_attempts),
            wait=wait,
            sleep=_sleep,
            reraise=True,
        )
        started = time.monotonic()
        try:
            return retrying(attempt)
        except DeadlineExceededError:
            raise
        except TransientTLCError as error:
            # Say how long was spent and what bounds it, so a slow failure explains itself.
            with_note(
                error,
                f" (gave up after {attempts} attempt(s) in {time.monotonic() - started:.1f} s; "
                f"connect timeout {self.limits.connect_timeout_seconds:g} s, read timeout "
                f"{self.limits.read_timeout_seconds:g} s, deadline {self.limits.deadline_seconds:g} s)",
            )
            raise

    def _deadline_error(
        self, method: str, url: str, attempts: int, last_error: list[BaseException]
    ) -> DeadlineExceededError:
        last = f"; last error: {last_error[0]}" if last_error else ""
        return DeadlineExceededError(
            f"{method} {url}: no complete answer within the {self.limits.deadline_seconds:g} s deadline "
            f"({attempts} attempt(s), connect timeout {self.limits.connect_timeout_seconds:g} s, read "
            f"timeout {self.limits.read_timeout_seconds:g} s; see TripSource.deadline_seconds){last}"
        )

    def _send(self, method: str, url: str, *, stream: bool, remaining: float) -> requests.Response:
        connect = min(self.limits.connect_timeout_seconds, remaining)
        read = min(self.limits.read_timeout_seconds, remaining)
        try:
            response = self.session.request(method, url, timeout=(connect, read), stream=stream)
        except requests.Timeout as error:
            limit = (
                self.limits.connect_timeout_seconds
                if isinstance(error, requests.ConnectTimeout)
                else self.limits.read_timeout_seconds
            )
            if remaining < limit:
                # The timeout was cut to what was left of the deadline: the deadline is the cause.
                raise DeadlineExceededError(
                    f"{method} {url}: no complete answer within the {self.limits.deadline_seconds:g} s "
                    f"deadline (the last attempt timed out: {error}; see "
                    "TripSource.deadline_seconds)"
                ) from error
            raise TransientTLCError(f"{method} {url} failed: {error}") from error
        except requests.ConnectionError as error:
            raise TransientTLCError(f"{method} {url} failed: {error}") from error
        if response.status_code == 404:
            response.close()
            raise MonthNotPublishedError(
                f"{url} does not exist (HTTP 404): TLC has not published this file yet, "
                "or the taxi type or month is wrong"
            )
        if response.status_code in TRANSIENT_STATUS_CODES:
            response.close()
            raise TransientTLCError(
                f"{method} {url} answered HTTP {response.status_code} {response.reason}"
            )
        if response.status_code >= 400:
            response.close()
            raise RequestRejectedError(
                f"{method} {url} answered HTTP {response.status_code} {response.reason}"
            )
        return response

    def receive_body(
        self, url: str, temp: Path, response: requests.Response, deadline: float
    ) -> None:
        """Write the streamed body of `response` to `temp`, within the read timeout and deadline.

        Each read is one socket read (`read1`) whose timeout is the read timeout or what is left
        of the deadline, whichever is shorter, so a source that trickles bytes cannot stretch a
        call past its deadline.
        """
        expected = response.headers.get("Content-Length")
        raw = response.raw
        connection = getattr(raw, "connection", None)
        sock = getattr(connection, "sock", None)
        try:
            with temp.open("wb") as handle:
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise self._transfer_deadline_error(url, temp, expected)
                    if sock is not None:
                        sock.settimeout(min(self.limits.read_timeout_seconds, remaining))
                    chunk = raw.read1(_CHUNK_BYTES, decode_content=True)
                    if not chunk:
                        break
                    handle.write(chunk)
        except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as error:
            if isinstance(error, PermissionError):
                raise  # the cache folder, not the transfer
            if time.monotonic() >= deadline:
                # The last read's timeout was what was left of the deadline.
                raise self._transfer_deadline_error(url, temp, expected) from error
            # The body was cut short or stalled: worth another attempt.
            raise TransientTLCError(
                f"GET {url}: the transfer broke after {temp.stat().st_size} of "
                f"{expected or 'unknown'} bytes ({error})"
            ) from error
        if expected is not None and temp.stat().st_size != int(expected):
            raise TransientTLCError(
                f"GET {url}: received {temp.stat().st_size} bytes, expected {expected}"
            )

    def _transfer_deadline_error(
        self, url: str, temp: Path, expected: str | None
    ) -> DeadlineExceededError:
        return DeadlineExceededError(
            f"GET {url}: the transfer did not finish within the {self.limits.deadline_seconds:g} s "
            f"deadline ({temp.stat().st_size} of {expected or 'unknown'} bytes received; see "
            "TripSource.deadline_seconds)"
        )
