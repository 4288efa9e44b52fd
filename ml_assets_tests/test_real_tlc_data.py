"""The real NYC TLC files (green, January to March 2021), served from a loopback HTTP server.

Skipped, saying why, when the shared data folder (conftest `SHARED_TLC_DIR`, overridable with
`ML_ASSETS_SHARED_TLC_DIR`) or one of its files is missing.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ml_assets.lib.features import build_trip_features
from ml_assets.lib.model import ModelParams, regression_metrics, train_model
from ml_assets.lib.trip_schema import normalize_trips, normalize_zones
from ml_assets.resources import build_resources
from ml_assets.settings import Settings
from ml_assets_tests.conftest import SHARED_TLC_DIR
from ml_assets_tests.graph import INGESTION_AND_FEATURES
from ml_assets_tests.http_fixtures import FileServer

JANUARY_FILE = "green_tripdata_2021-01.parquet"
FEBRUARY_FILE = "green_tripdata_2021-02.parquet"
MARCH_FILE = "green_tripdata_2021-03.parquet"
ZONES_FILE = "taxi_zone_lookup.csv"
DAY = "2021-01-15"
COURSE_LINEAR_REGRESSION_RMSE = 7.7587
"""The MLOps Zoomcamp baseline on this protocol: linear regression, train January, score February."""
COURSE_PROTOCOL_RMSE_BOUND = 5.2
"""Issue 16's goal. The default model on the course protocol measured 5.10 (5.205 before it read
the pickup time, `pickup_days`; 5.333 for the first defaults). Deterministic: one thread, fixed
seeds."""
NEXT_MONTH_RMSE_BOUND = 5.0
"""Train February, score March (months the defaults were not tuned on): 4.931 measured (4.925
before `pickup_days`), against 5.068 for the first defaults."""

_missing = [
    name
    for name in (JANUARY_FILE, FEBRUARY_FILE, ZONES_FILE)
    if not (SHARED_TLC_DIR / name).is_file()
]
pytestmark = pytest.mark.skipif(
    bool(_missing),
    reason=f"real TLC data not available: {', '.join(_missing)} missing from {SHARED_TLC_DIR} "
    "(set ML_ASSETS_SHARED_TLC_DIR to where the green 2021-01/02 files and the zone lookup are)",
)


@dataclass
class Served:
    server: FileServer
    settings: Settings


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The shared files on a loopback HTTP server, and `tlc` settings pointing at it."""
    root = tmp_path_factory.mktemp("tlc_host")
    server = FileServer(root)
    for name in (JANUARY_FILE, FEBRUARY_FILE, ZONES_FILE):
        server.add_file(name, SHARED_TLC_DIR / name)
    with server.running():
        settings = Settings.from_env(
            {
                "ML_ASSETS_SOURCE": "tlc",
                "ML_ASSETS_DATA_DIR": str(tmp_path_factory.mktemp("tlc") / "data"),
                "ML_ASSETS_TLC_BASE_URL": server.base_url,
                "ML_ASSETS_TLC_ZONE_LOOKUP_URL": server.url(ZONES_FILE),
            }
        )
        yield Served(server, settings)


def independent_counts(path: Path, day: date) -> tuple[int, int]:
    """Trips picked up on `day`, and those the cleaning rules keep, with pyarrow alone."""
    table = pq.read_table(path)
    midnight = datetime(day.year, day.month, day.day)
    start = pa.scalar(midnight, pa.timestamp("us"))
    end = pa.scalar(midnight + timedelta(days=1), pa.timestamp("us"))
    pickup = table["lpep_pickup_datetime"].cast(pa.timestamp("us"))
    on_day = table.filter(pc.and_(pc.greater_equal(pickup, start), pc.less(pickup, end)))
    minutes = pc.divide(
        pc.microseconds_between(
            on_day["lpep_pickup_datetime"].cast(pa.timestamp("us")),
            on_day["lpep_dropoff_datetime"].cast(pa.timestamp("us")),
        ).cast(pa.float64()),
        60e6,
    )
    keep = pc.and_(
        pc.and_(pc.greater_equal(minutes, 1.0), pc.less_equal(minutes, 60.0)),
        pc.and_(
            pc.and_(
                pc.greater_equal(on_day["trip_distance"], 0.0),
                pc.less_equal(on_day["trip_distance"], 100.0),
            ),
            pc.and_(
                pc.and_(
                    pc.greater_equal(on_day["PULocationID"], 1),
                    pc.less_equal(on_day["PULocationID"], 265),
                ),
                pc.and_(
                    pc.greater_equal(on_day["DOLocationID"], 1),
                    pc.less_equal(on_day["DOLocationID"], 265),
                ),
            ),
        ),
    )
    return on_day.num_rows, int(pc.sum(pc.fill_null(keep, False).cast(pa.int64())).as_py() or 0)


def test_raw_trips_and_features_of_a_january_day_match_the_file(
    served: Served, instance: dg.DagsterInstance
) -> None:
    assets = INGESTION_AND_FEATURES
    resources = build_resources(served.settings)
    dg.materialize(assets, selection=["taxi_zones"], resources=resources, instance=instance)

    result = dg.materialize(
        assets,
        selection=["raw_trips", "trip_features"],
        partition_key=DAY,
        resources=resources,
        instance=instance,
    )

    trips_on_day, kept = independent_counts(SHARED_TLC_DIR / JANUARY_FILE, date(2021, 1, 15))
    assert (trips_on_day, kept) > (1000, 1000)  # a real weekday, not an empty filter
    meta = {
        event.asset_key.to_user_string(): event.materialization.metadata
        for event in result.get_asset_materialization_events()
    }
    assert meta["raw_trips"]["dagster/row_count"].value == trips_on_day
    assert meta["raw_trips"]["synthetic"].value is False
    assert meta["trip_features"]["dagster/row_count"].value == kept
    assets_dir = served.settings.assets_dir
    assert pl.read_parquet(assets_dir / "raw_trips" / f"{DAY}.parquet").height == trips_on_day
    assert pl.read_parquet(assets_dir / "trip_features" / f"{DAY}.parquet").height == kept
    zones = pl.read_parquet(assets_dir / "taxi_zones.parquet")
    assert zones.height == 265
    assert zones.filter(pl.col("LocationID") == 1)["Zone"].to_list() == ["Newark Airport"]
    # Downloaded once into the cache, byte for byte.
    cached = served.settings.cache_dir / JANUARY_FILE
    assert cached.read_bytes() == (SHARED_TLC_DIR / JANUARY_FILE).read_bytes()
    assert served.server.requests_for(JANUARY_FILE) == ["GET"]


@pytest.mark.slow
def test_a_model_trained_on_january_beats_the_course_baseline_on_february(
    served: Served,
) -> None:
    source = build_resources(served.settings)["trip_source"]
    client = source.client()  # type: ignore[attr-defined]
    zones = client.read_zones()

    def month_features(month: date) -> pl.DataFrame:
        cached = client.fetch_month("green", month)
        trips = normalize_trips(
            pl.read_parquet(cached.path), taxi_type="green", source_name=cached.path.name
        )
        return build_trip_features(trips.lazy(), zones.lazy()).collect()

    january, february = month_features(date(2021, 1, 1)), month_features(date(2021, 2, 1))
    model = train_model(january, ModelParams())
    metrics = regression_metrics(february["duration_min"].to_numpy(), model.predict(february))

    # 73,908 / 61,921 trips of 1..60 minutes (shared data README); zones and distances cut a few.
    assert 73_000 < january.height <= 73_908
    assert 61_000 < february.height <= 61_921
    assert metrics["rmse"] < COURSE_LINEAR_REGRESSION_RMSE


def month_features_from_file(name: str) -> pl.DataFrame:
    """`trip_features` of a shared month file, with the project's cleaning."""
    zones = normalize_zones(
        pl.read_csv(SHARED_TLC_DIR / ZONES_FILE, infer_schema_length=0), source_name=ZONES_FILE
    )
    trips = normalize_trips(
        pl.read_parquet(SHARED_TLC_DIR / name), taxi_type="green", source_name=name
    )
    return build_trip_features(trips.lazy(), zones.lazy()).collect()


@pytest.mark.slow
def test_the_default_model_meets_its_rmse_on_the_course_protocol() -> None:
    january, february = (
        month_features_from_file(JANUARY_FILE),
        month_features_from_file(FEBRUARY_FILE),
    )

    model = train_model(january, ModelParams())
    metrics = regression_metrics(february["duration_min"].to_numpy(), model.predict(february))

    assert metrics["rmse"] <= COURSE_PROTOCOL_RMSE_BOUND, metrics
    # Fit on one thread. Its CPU budget (5 s) is a goal of `python -m bench model`, measured side
    # by side with the linear regression's fit, not a timed assertion: on this shared machine
    # the same fit took 3 s of CPU on a quiet day and 5.4 s on a slow one.
    assert model.params.n_threads == 1


@pytest.mark.slow
@pytest.mark.skipif(
    not (SHARED_TLC_DIR / MARCH_FILE).is_file(),
    reason=f"real TLC data not available: {MARCH_FILE} missing from {SHARED_TLC_DIR}",
)
def test_the_default_model_generalizes_to_the_next_month() -> None:
    february, march = month_features_from_file(FEBRUARY_FILE), month_features_from_file(MARCH_FILE)

    model = train_model(february, ModelParams())
    metrics = regression_metrics(march["duration_min"].to_numpy(), model.predict(march))

    assert metrics["rmse"] <= NEXT_MONTH_RMSE_BOUND, metrics
