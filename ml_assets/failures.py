"""Which step failures a retry cannot heal, and how steps report them.

A step's `RetryPolicy` retries whatever it raises. Waiting does not fix a file that breaks the trip
schema, an unreadable file, a zone lookup without zones, a month TLC has not published, a request
the source refuses, a folder the step may not write to or a day without the trips a model needs
(`NotEnoughTripsError`): those fail the step at once, as a `dg.Failure(allow_retries=False)` whose
description names the culprit. Everything else (timeouts, connection resets, 5xx, a busy database)
keeps the step's backoff.

A run told to stop (Ctrl-C or SIGTERM to `dagster asset materialize`, "Terminate" in the UI) is not
retried either: Dagster turns an interrupt inside a step that has a `RetryPolicy` into a retry
request, so with the in-process executor the step started again and kept downloading after every
Ctrl-C. `failing_without_retries` re-raises the interrupt as `StopRequested`, which Dagster
reports as an interrupted step and which ends the run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import dagster as dg

from ml_assets.lib.errors import NotEnoughTripsError
from ml_assets.lib.tlc_errors import CorruptFileError, MonthNotPublishedError, RequestRejectedError
from ml_assets.lib.trip_schema import TripSchemaError

PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    # Bad content: a month or zone lookup breaking the schema (ZoneLookupError is one of these).
    TripSchemaError,
    # Not parquet, truncated, or no rows.
    CorruptFileError,
    # HTTP 404 for a month: TLC publishes weeks after the month ends, not seconds.
    MonthNotPublishedError,
    # Any other 4xx, or a zone lookup URL that does not exist: a setting to fix.
    RequestRejectedError,
    # The cache or data directory: permissions and paths to fix.
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
    FileExistsError,  # a file where a folder must be
    # A day or training window without the trips a step needs: trip_features must change first.
    NotEnoughTripsError,
)
"""Errors that fail the same way however often they are retried."""


class StopRequested(dg.DagsterExecutionInterruptedError, dg.DagsterError):
    """The run was told to stop while this step ran; the step ends without a retry.

    A `DagsterError` so that Dagster's step boundary passes it on instead of turning it into a
    retry request, and a `DagsterExecutionInterruptedError` so that Dagster then records the step
    as interrupted and stops the run.
    """


@contextlib.contextmanager
def failing_without_retries(where: str | None = None) -> Iterator[None]:
    """Turn a `PERMANENT_ERRORS` error raised inside into a `dg.Failure` that is not retried.

    `where` (for example `partition 2021-01-05`) prefixes the message when the error does not
    already say it. An interrupt (`KeyboardInterrupt`, or Dagster's interrupt on SIGINT/SIGTERM
    or "Terminate") is re-raised as `StopRequested`, which ends the run without a retry.
    """
    try:
        yield
    except StopRequested:
        raise
    except (KeyboardInterrupt, dg.DagsterExecutionInterruptedError) as interrupt:
        raise StopRequested(
            f"{where + ': ' if where else ''}stopped on request; the step is not retried"
        ) from interrupt
    except PERMANENT_ERRORS as error:
        message = str(error)
        if where and where not in message:
            message = f"{where}: {message}"
        raise dg.Failure(description=message, allow_retries=False) from error
