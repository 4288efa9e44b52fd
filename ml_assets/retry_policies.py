"""The steps' retry policies: what may pass is retried with growing, jittered delays.

What waiting cannot fix fails at once whatever the policy (`ml_assets.failures`).
"""

import dagster as dg

network_retry = dg.RetryPolicy(
    max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
"""Downloads fail transiently (timeouts, resets, 5xx): retry with growing, jittered delays.

What waiting cannot fix fails at once (`ml_assets.failures.PERMANENT_ERRORS`): a month TLC has not
published (HTTP 404), a file that is not parquet or breaks the trip schema, a bad zone lookup, a
refused request, a cache or data folder the step may not write. So does a run told to stop.
"""

mlflow_retry = dg.RetryPolicy(
    max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
"""A tracking server restarting, a registry answering 5xx or a locked store is transient: retry
with backoff. Each attempt gives up on an unreachable server within its deadline
(`server_deadline_seconds` of the MLflow resources)."""
