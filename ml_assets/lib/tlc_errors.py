"""What can go wrong talking to the TLC source, by whether waiting can heal it."""


class TLCError(RuntimeError):
    """Base class for errors talking to the TLC source."""


class MonthNotPublishedError(TLCError):
    """TLC answered 404: the month's file does not exist (yet)."""


class RequestRejectedError(TLCError):
    """The source refused the request (a 4xx other than 404, 408, 425 and 429), or a URL is wrong.

    Asking again does not change the answer.
    """


class TransientTLCError(TLCError):
    """The source failed in a way that may pass (timeouts, connection resets, 5xx, 429)."""


class DeadlineExceededError(TransientTLCError):
    """A call did not complete within its total deadline (all attempts and waits together)."""


class CorruptFileError(TLCError):
    """The file is not a readable parquet file (truncated or not parquet at all), or has no rows."""
