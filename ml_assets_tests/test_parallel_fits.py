"""A range run fits several days' models at once in worker processes: the same models, in order."""

import gc
import multiprocessing
import weakref
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from datetime import date

import numpy as np
import polars as pl
import pytest

from ml_assets.lib.day_model import DayModel, training_rows
from ml_assets.lib.errors import NotEnoughTripsError
from ml_assets.lib.model_params import ModelParams
from ml_assets.lib.parallel_fits import fit_day_models, fitting_processes
from ml_assets_tests.test_model import features_frame

PARAMS = ModelParams(max_iter=10)
DAYS = [date(2021, 1, 4), date(2021, 1, 5), date(2021, 1, 6)]


SLOW = ModelParams(max_iter=2000, learning_rate=0.01)
"""Fits of minutes on `windows(100_000)`: a run that waited for them would see them finish."""


def windows(rows: int = 300) -> list[tuple[date, pl.DataFrame]]:
    # Three different windows, so that a model given to the wrong day would show.
    return [(day, training_rows(features_frame(rows, seed=n))) for n, day in enumerate(DAYS)]


def stopped(fit: "Future[DayModel]") -> bool:
    """Whether the day's fit was stopped (dropped or its worker stopped) rather than finished."""
    return fit.cancelled() or isinstance(fit.exception(), BrokenProcessPool)


def test_workers_fit_the_same_models_as_one_after_the_other_in_the_days_order() -> None:
    one_by_one = list(fit_day_models(windows(), PARAMS, processes=1))
    in_workers = list(fit_day_models(windows(), PARAMS, processes=2))

    assert [day for day, _, _ in in_workers] == DAYS
    probe = training_rows(features_frame(50, seed=9))
    for (_, window, alone), (_, same_window, parallel) in zip(one_by_one, in_workers, strict=True):
        assert window.equals(same_window)
        assert parallel.result().validation == alone.result().validation
        assert parallel.result().baseline == alone.result().baseline
        assert np.array_equal(
            parallel.result().model.predict(probe), alone.result().model.predict(probe)
        )


@pytest.mark.parametrize("processes", [1, 2])
def test_a_failed_fit_raises_for_its_own_day_only(processes: int) -> None:
    days = windows()
    days[1] = (DAYS[1], days[1][1].clear())  # no rows to train on

    fitted = {day: fitting for day, _, fitting in fit_day_models(days, PARAMS, processes)}

    assert fitted[DAYS[0]].result().model.train_rows == 300
    with pytest.raises(ValueError, match="cannot train on zero rows of trip_features"):
        fitted[DAYS[1]].result()
    assert fitted[DAYS[2]].result().model.train_rows == 300


@pytest.mark.parametrize("processes", [1, 2])
def test_the_days_read_before_a_window_that_cannot_be_read_come_first(processes: int) -> None:
    def read() -> Iterator[tuple[date, pl.DataFrame]]:
        yield from windows()[:2]
        raise NotEnoughTripsError("partition 2021-01-06: no trips in its window")

    given = []
    with pytest.raises(NotEnoughTripsError, match="partition 2021-01-06: no trips"):
        for day, _, fitting in fit_day_models(read(), PARAMS, processes):
            given.append((day, fitting.result().model.train_rows))

    assert given == [(DAYS[0], 300), (DAYS[1], 300)]


def test_one_worker_per_core_unless_asked_and_never_more_than_the_days() -> None:
    cores = fitting_processes(days=1000)
    assert cores >= 1
    assert fitting_processes(days=1) == 1  # a day's run fits in its own process
    assert fitting_processes(days=1000, requested=3) == 3
    assert fitting_processes(days=2, requested=8) == 2


def test_a_caller_that_stops_early_does_not_wait_for_the_fits_still_running() -> None:
    fits = fit_day_models(windows(100_000), SLOW, processes=2)
    _, _, first = next(fits)

    fits.close()  # as a failed day or a stopped run does

    assert first.done()
    assert stopped(first)
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("processes", [1, 2])
def test_a_days_model_is_freed_once_the_caller_moves_on(processes: int) -> None:
    # A backfill of a year must not hold a year of models: only the days not yet taken.
    models: list[weakref.ref[DayModel]] = []
    alive_at_the_last_day = []
    for day, _, fitting in fit_day_models(windows(), PARAMS, processes):
        models.append(weakref.ref(fitting.result()))
        if day == DAYS[-1]:
            gc.collect()
            alive_at_the_last_day = [model() is not None for model in models]

    assert alive_at_the_last_day == [False, False, True]


def test_a_run_told_to_stop_while_reading_the_days_stops_the_fits_running() -> None:
    fits: list[Future[DayModel]] = []

    def read() -> Iterator[tuple[date, pl.DataFrame]]:
        yield from windows(100_000)
        raise KeyboardInterrupt  # as Dagster's interrupt arrives in the step

    with pytest.raises(KeyboardInterrupt):
        for _, _, fitting in fit_day_models(read(), SLOW, processes=2):
            fits.append(fitting)

    # The day given before the interrupt was stopped, not waited for: no model came of it.
    assert [stopped(fit) for fit in fits] == [True]
    assert multiprocessing.active_children() == []
