"""How a day's model is recorded in MLflow: its run, params and metrics, the logged model and its
registered version.

A run of one day logs into the MLflow run of its Dagster run (dagster-mlflow's); a run of several
days logs each day into a run of its own, nested in that one. MLflow is imported only here, when
a step logs: importing it takes about a second.
"""

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import polars as pl

from ml_assets.lib.registry import RegisteredModel
from ml_assets.lib.registry_labels import TRAINED_THROUGH_TAG
from ml_assets.resources.mlflow import MlflowTracking, ModelRegistryResource

if TYPE_CHECKING:
    from mlflow import ActiveRun

    from ml_assets.lib.day_model import DayModel
    from ml_assets.lib.model import TrainedModel

MLFLOW_MODEL_NAME = "model"


def pip_requirements() -> list[str]:
    """Pinned explicitly: MLflow would otherwise spend seconds inferring them on every log."""
    import mlflow
    import numpy
    import pandas
    import sklearn

    return [
        f"scikit-learn=={sklearn.__version__}",
        f"pandas=={pandas.__version__}",
        f"numpy=={numpy.__version__}",
        f"mlflow=={mlflow.__version__}",
    ]


@contextlib.contextmanager
def ending(start: "Callable[[], ActiveRun]") -> "Iterator[ActiveRun]":
    """The MLflow run `start` makes active, ended with the block: FAILED (keeping what it logged)
    when the block raises."""
    import mlflow

    run = start()
    try:
        yield run
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    mlflow.end_run()


class DayRuns(contextlib.ExitStack):
    """The MLflow run each day of a training step logs into, for a step over `days` days.

    One day: the MLflow run of the Dagster run (dagster-mlflow's), started when the day logs, so a
    step that fails before (bad config, no trips) leaves none behind, and a retried step resumes
    the run its previous attempt ended. Several days: a run of its own per day, nested in that
    one, which the first day starts and the end of the block ends.
    """

    def __init__(self, mlflow_tracking: MlflowTracking, days: int) -> None:
        super().__init__()
        self._tracking = mlflow_tracking
        self._nested = days > 1
        self._dagster_run_started = False

    def of_day(self, day: str) -> contextlib.AbstractContextManager["ActiveRun"]:
        """The active MLflow run of `day` for the block, ended with it."""
        if not self._nested:
            return ending(self._tracking.start_run)
        if not self._dagster_run_started:
            self.enter_context(ending(self._tracking.start_run))
            self._dagster_run_started = True

        def start() -> "ActiveRun":
            import mlflow

            return mlflow.start_run(run_name=f"duration_model {day}", nested=True)

        return ending(start)


def log_day(
    mlflow_tracking: MlflowTracking,
    model_registry: ModelRegistryResource,
    day: str,
    window: pl.DataFrame,
    fitted: "DayModel",
    training_days: int,
) -> RegisteredModel:
    """Log the day's params, metrics and model to the active MLflow run; register the model."""
    import mlflow

    mlflow_tracking.log_params(
        {
            **fitted.model.params.as_mlflow_params(),
            "window_days": str(training_days),
            "window_start": fitted.window_start,
            "window_end": fitted.window_end,
        }
    )
    mlflow.log_metrics(fitted.metrics)
    mlflow.set_tags({"dagster_partition": day, "dagster_asset": "duration_model"})
    return log_and_register(fitted.model, window, model_registry, day)


def trusted_types(pipeline: object) -> list[str]:
    """The types skops must trust to load `pipeline` back: exactly those it is made of."""
    # Imported here: importing skops takes seconds, and most steps never log a model.
    import skops.io

    return skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))


def log_and_register(
    model: "TrainedModel",
    features: pl.DataFrame,
    model_registry: ModelRegistryResource,
    day: str,
) -> RegisteredModel:
    """Log the model to the active MLflow run as a new version of the registered model, tagged
    with the day it is trained through."""
    import mlflow
    from mlflow.models import infer_signature

    from ml_assets.lib.model_input import model_input

    example = model_input(features.head(5), model.params.features)
    signature = infer_signature(example, model.pipeline.predict(example))
    info = mlflow.sklearn.log_model(
        model.pipeline,
        name=MLFLOW_MODEL_NAME,
        signature=signature,
        input_example=example,
        pip_requirements=pip_requirements(),
        registered_model_name=model_registry.model_name,
        # MLflow stores sklearn models with skops, which loads only types it is told to trust:
        # trust exactly the types of the pipeline trained here.
        skops_trusted_types=trusted_types(model.pipeline),
    )
    version = str(info.registered_model_version)
    registry = model_registry.registry()
    registry.tag_version(version, TRAINED_THROUGH_TAG, day)
    return registry.version(version)
