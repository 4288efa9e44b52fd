"""Which step failures a retry cannot heal, and how steps report them.

A step's `RetryPolicy` retries whatever it raises. Waiting does not fix a file that breaks the trip
schema, a zone lookup without zones or a folder the step may not write to: those fail the step at
once, as a `dg.Failure(allow_retries=False)` whose description names the culprit. Everything else
(timeouts, 5xx, a busy database) keeps the step's backoff.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import dagster as dg

from ml_assets.lib.tlc_client import CorruptFileError
from ml_assets.lib.trip_schema import TripSchemaError

PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    TripSchemaError,
    CorruptFileError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)
"""Errors that fail the same way however often they are retried."""


@contextlib.contextmanager
def failing_without_retries(where: str | None = None) -> Iterator[None]:
    """Turn a `PERMANENT_ERRORS` error raised inside into a `dg.Failure` that is not retried.

    `where` (for example `partition 2021-01-05`) prefixes the message when the error does not
    already say it.
    """
    try:
        yield
    except PERMANENT_ERRORS as error:
        message = str(error)
        if where and where not in message:
            message = f"{where}: {message}"
        raise dg.Failure(description=message, allow_retries=False) from error
