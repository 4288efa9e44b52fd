"""Fitting several days' models at once, each in a worker process: how a range run uses every core.

A day's fit (`fit_day_model`) uses one core and does not depend on any other day's, so a run over
many days hands them to worker processes and takes the models back in the days' order, logging
each while the next ones fit. The models are the same as fitted one after the other.
"""

import contextlib
import multiprocessing
import os
import queue
import signal
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import date
from typing import Any

import polars as pl

from ml_assets.lib.day_model import DayModel, fit_day_model
from ml_assets.lib.model_params import ModelParams

WORKER_START_SECONDS = 60.0
"""How long a range run that stops waits for a fitting worker still starting up (importing
scikit-learn takes a second or two) to be told to stop."""


def fitting_processes(days: int, requested: int | None = None) -> int:
    """How many worker processes fit the models of `days` days: `requested`, or else one per CPU
    core this process may use; never more than there are days. 1 means no workers."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(days, requested or cores or 1))


def fit_day_models(
    windows: Iterable[tuple[date, pl.DataFrame]], params: ModelParams, processes: int
) -> Iterator[tuple[date, pl.DataFrame, "Future[DayModel]"]]:
    """Each day's window with its model (`fit_day_model`) as a future, in the windows' order.

    With `processes` above 1, up to that many days are fitted at once, each in a worker process
    (a fit uses one core, and the days' fits do not depend on each other): the same models as
    fitted one after the other, in a fraction of the time, while the caller logs the days before.
    A day's `result()` raises what its fit raised. When reading the windows raises, the days
    read before are still given first.
    """
    if processes <= 1:
        for day, window in windows:
            yield day, window, _fitted_here(window, params)
        return
    # Spawned, not forked: the caller's process runs polars' and Dagster's threads.
    context = multiprocessing.get_context("spawn")
    worker_pids = context.Queue()
    pool = ProcessPoolExecutor(
        processes, mp_context=context, initializer=_report_pid, initargs=(worker_pids,)
    )
    pending: deque[tuple[date, pl.DataFrame, Future[DayModel]]] = deque()
    # Only the days not yet taken are held here: a day's model is freed once its caller is done.
    given: Future[DayModel] | None = None
    try:
        unread: Exception | None = None
        try:
            for day, window in windows:
                pending.append((day, window, pool.submit(fit_day_model, window, params)))
                if len(pending) > processes:  # a day queued behind the busy workers, no more
                    _, _, given = item = pending.popleft()
                    yield item
        except Exception as error:
            unread = error
        while pending:
            _, _, given = item = pending.popleft()
            yield item
        if unread is not None:
            raise unread
    except BaseException:
        # The caller stopped (a failed day), or the run was told to stop while the days were
        # read: the days not started are dropped, and the fits still running, which on large
        # windows would keep it waiting for minutes, are stopped.
        for _, _, waiting in pending:
            waiting.cancel()
        running = [fit for _, _, fit in pending] + ([given] if given else [])
        _stop_workers(worker_pids, running)
        raise
    finally:
        pool.shutdown(wait=True)  # every worker has exited when the days are done with
        worker_pids.close()


def _report_pid(worker_pids: "multiprocessing.Queue[int]") -> None:
    worker_pids.put(os.getpid())


def _stop_workers(worker_pids: "multiprocessing.Queue[int]", fits: list[Future[Any]]) -> None:
    # A worker reports its pid before it takes a fit; one still starting is waited for. A worker
    # that stops breaks the pool, which then fails the fits still running.
    deadline = time.monotonic() + WORKER_START_SECONDS
    while not all(fit.done() for fit in fits) and time.monotonic() < deadline:
        try:
            pid = worker_pids.get(timeout=0.1)
        except queue.Empty:
            continue
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.kill(pid, signal.SIGTERM)


def _fitted_here(window: pl.DataFrame, params: ModelParams) -> "Future[DayModel]":
    fitted: Future[DayModel] = Future()
    try:
        fitted.set_result(fit_day_model(window, params))
    except Exception as error:
        fitted.set_exception(error)
    return fitted
