"""The suite's own isolation: what one test leaves in the process, the next does not inherit."""

import os

import mlflow
import pytest

LEAKED = "sqlite:////nonexistent/leaked-by-an-earlier-test.db"


@pytest.mark.parametrize("order", ["first", "second"])
def test_a_tracking_uri_set_by_one_test_is_gone_in_the_next(order: str) -> None:
    # Run one after the other in one process (always with `-n 0`), the second case sees what the
    # first left behind.
    assert os.environ.get("MLFLOW_TRACKING_URI") != LEAKED
    if order == "first":
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(LEAKED)  # as dagster-mlflow does in every in-process run
        assert os.environ["MLFLOW_TRACKING_URI"] == LEAKED
        # MLflow's own default stays as it was; only the exported variable is left behind.
        mlflow.set_tracking_uri(previous)
        os.environ["MLFLOW_TRACKING_URI"] = LEAKED
