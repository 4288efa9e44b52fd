"""The TLC client and the `tlc` trip source against a real HTTP server on 127.0.0.1."""

import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest

from ml_assets.lib.month_cache import sha256_of
from ml_assets.lib.tlc_client import TLCClient
from ml_assets.lib.tlc_errors import (
    CorruptFileError,
    DeadlineExceededError,
    MonthNotPublishedError,
    RequestRejectedError,
    TLCError,
    TransientTLCError,
)
from ml_assets.lib.tlc_http import HttpLimits
from ml_assets.lib.trip_schema import TRIP_SCHEMA, TripSchemaError
from ml_assets.resources.trip_source import TripSource
from ml_assets_tests.http_fixtures import FileServer, ScriptedResponse, silent_url

JANUARY = date(2021, 1, 1)
JANUARY_FILE = "green_tripdata_2021-01.parquet"


def tlc_month(
    id_dtype: type[pl.DataType] = pl.Int64, prefix: str = "lpep", drop: tuple[str, ...] = ()
) -> pl.DataFrame:
    """Four trips in TLC's raw layout: three on 2021-01-15, one on 2021-01-16."""
    frame = pl.DataFrame(
        {
            "VendorID": [2, 1, 2, 2],
            f"{prefix}_pickup_datetime": [
                datetime(2021, 1, 15, 8, 0),
                datetime(2021, 1, 15, 9, 30),
                datetime(2021, 1, 15, 23, 59),
                datetime(2021, 1, 16, 0, 1),
            ],
            f"{prefix}_dropoff_datetime": [
                datetime(2021, 1, 15, 8, 12),
                datetime(2021, 1, 15, 9, 50),
                datetime(2021, 1, 16, 0, 9),
                datetime(2021, 1, 16, 0, 30),
            ],
            "store_and_fwd_flag": ["N", "N", "N", "N"],
            "RatecodeID": [1.0, 1.0, None, 1.0],
            "PULocationID": [74, 75, 41, 42],
            "DOLocationID": [75, 74, 42, 41],
            "passenger_count": [1.0, 2.0, None, 1.0],
            "trip_distance": [1.2, 3.4, 0.0, 5.5],
            "fare_amount": [7.0, 12.5, 3.0, 20.0],
            "ehail_fee": [None, None, None, None],
            "total_amount": [8.3, 15.0, 3.8, 24.0],
            "payment_type": [1.0, 2.0, None, 1.0],
        }
    ).with_columns(pl.col("VendorID", "PULocationID", "DOLocationID").cast(id_dtype))
    return frame.drop(list(drop))


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def make_client(server: FileServer, cache_dir: Path, **options: float) -> TLCClient:
    return TLCClient(
        cache_dir,
        base_url=server.base_url,
        zone_lookup_url=server.url("taxi_zone_lookup.csv"),
        connect_timeout_seconds=options.pop("connect_timeout_seconds", 10.0),
        read_timeout_seconds=options.pop("read_timeout_seconds", 10.0),
        deadline_seconds=options.pop("deadline_seconds", 60.0),
        max_attempts=int(options.pop("max_attempts", 3)),
        backoff_seconds=options.pop("backoff_seconds", 0.0),
    )


def cache_listing(cache_dir: Path) -> list[str]:
    return sorted(path.name for path in cache_dir.iterdir()) if cache_dir.exists() else []


def test_downloads_a_month_into_the_cache_with_a_checksum_sidecar(
    tlc_server: FileServer, tmp_path: Path
) -> None:
    content = parquet_bytes(tlc_month())
    tlc_server.add_file(JANUARY_FILE, content)
    client = make_client(tlc_server, tmp_path / "cache")

    cached = client.fetch_month("green", JANUARY)

    assert cached.downloaded is True
    assert cached.url == tlc_server.url(JANUARY_FILE)
    assert cached.path == tmp_path / "cache" / JANUARY_FILE
    assert cached.path.read_bytes() == content
    assert cached.sha256 == sha256_of(cached.path)
    assert cached.etag is not None and cached.etag.startswith('"')
    sidecar = json.loads((tmp_path / "cache" / "green_tripdata_2021-01.json").read_text())
    assert sidecar == {
        "url": cached.url,
        "sha256": cached.sha256,
        "etag": cached.etag,
        "last_modified": cached.last_modified,
        "size": len(content),
    }
    assert cached.last_modified is not None
    assert cached.version == cached.etag
    assert tlc_server.requests_for(JANUARY_FILE) == ["GET"]


def test_a_cached_month_is_read_without_asking_the_server_again(
    tlc_server: FileServer, tmp_path: Path
) -> None:
    tlc_server.add_file(JANUARY_FILE, parquet_bytes(tlc_month()))
    client = make_client(tlc_server, tmp_path / "cache")
    first = client.fetch_month("green", JANUARY)
    tlc_server.remove_file(JANUARY_FILE)  # a request now would fail

    again = make_client(tlc_server, tmp_path / "cache").fetch_month("green", JANUARY)

    assert again.downloaded is False
    assert (again.path, again.sha256, again.etag) == (first.path, first.sha256, first.etag)
    assert tlc_server.requests_for(JANUARY_FILE) == ["GET"]


def test_404_means_the_month_is_not_published_and_is_not_retried(
    tlc_server: FileServer, tmp_path: Path
) -> None:
    client = make_client(tlc_server, tmp_path / "cache", max_attempts=3)

    with pytest.raises(MonthNotPublishedError) as raised:
        client.fetch_month("green", date(2031, 5, 1))

    message = str(raised.value)
    assert "green_tripdata_2031-05.parquet" in message
    assert "HTTP 404" in message
    assert "not published" in message
    assert not isinstance(raised.value, CorruptFileError | TransientTLCError)
    assert tlc_server.requests_for("green_tripdata_2031-05.parquet") == ["GET"]
    assert cache_listing(tmp_path / "cache") == []


def test_transient_errors_are_retried_until_the_file_arrives(
    tlc_server: FileServer, tmp_path: Path
) -> None:
    content = parquet_bytes(tlc_month())
    tlc_server.add_file(JANUARY_FILE, content)
    tlc_server.script(JANUARY_FILE, [503, 429])
    client = make_client(tlc_server, tmp_path / "cache", max_attempts=3)

    cached = client.fetch_month("green", JANUARY)

    assert cached.path.read_bytes() == content
    assert tlc_server.requests_for(JANUARY_FILE) == ["GET", "GET", "GET"]


def test_retries_back_off_exponentially_with_jitter(
    tlc_server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    monkeypatch.setattr("ml_assets.lib.tlc_http.time.sleep", waits.append)
    tlc_server.add_file(JANUARY_FILE, parquet_bytes(tlc_month()))
    tlc_server.script(JANUARY_FILE, [503, 502, 504])
    client = make_client(tlc_server, tmp_path / "cache", max_attempts=4, backoff_seconds=2.0)

    client.fetch_month("green", JANUARY)

    # 2 s, 4 s, 8 s, each plus up to half of itself at random; no wait after the last attempt.
    assert len(waits) == 3
    for wait, base in zip(waits, (2.0, 4.0, 8.0), strict=True):
        assert base <= wait <= 1.5 * base


def test_a_server_that_does_not_answer_in_time_is_retried(
    tlc_server: FileServer, tmp_path: Path
) -> None:
    content = parquet_bytes(tlc_month())
    tlc_server.add_file(JANUARY_FILE, content)
    tlc_server.script(JANUARY_FILE, [ScriptedResponse(status=None, delay_seconds=1.0)])
    client = make_client(tlc_server, tmp_path / "cache", max_attempts=2, read_timeout_seconds=0.2)

    cached = client.fetch_month("green", JANUARY)

    assert cached.path.read_bytes() == content
    assert tlc_server.requests_for(JANUARY_FILE) == ["GET", "GET"]


def test_transient_errors_that_persist_fail_naming_the_status_after_every_attempt(
    tlc_server: FileServer, tmp_path: Path
) -> None:
    tlc_server.add_file(JANUARY_FILE, parquet_bytes(tlc_month()))
    tlc_server.script(JANUARY_FILE, [503, 503])
    client = make_client(tlc_server, tmp_path / "cache", max_attempts=2)

    with pytest.raises(
        TransientTLCError,
        match=r"HTTP 503 Service Unavailable \(gave up after 2 attempt\(s\) in .* deadline 60 s\)$",
    ):
        client.fetch_month("green", JANUARY)

    assert tlc_server.requests_for(JANUARY_FILE) == ["GET", "GET"]
    assert cache_listing(tmp_path / "cache") == []


def test_other_client_errors_fail_at_once(tlc_server: FileServer, tmp_path: Path) -> None:
    tlc_server.script(JANUARY_FILE, [403])
    client = make_client(tlc_server, tmp_path / "cache", max_attempts=3)

    with pytest.raises(TLCError, match=r"GET .*green_tripdata_2021-01\.parquet answered HTTP 403"):
        client.fetch_month("green", JANUARY)

    assert tlc_server.requests_for(JANUARY_FILE) == ["GET"]


def test_an_unreachable_host_is_a_transient_error(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = TLCClient(
        tmp_path / "cache", base_url=f"http://127.0.0.1:{port}", max_attempts=2, backoff_seconds=0
    )

    with pytest.raises(TransientTLCError, match=rf"GET http://127.0.0.1:{port}/.* failed"):
        client.fetch_month("green", JANUARY)


def test_a_truncated_file_is_reported_as_corrupt_and_not_cached(
    tlc_server: FileServer, tmp_path: Path
) -> None:
    content = parquet_bytes(tlc_month())
    tlc_server.add_file(JANUARY_FILE, content[: len(content) // 2])
    client = make_client(tlc_server, tmp_path / "cache")

    with pytest.raises(CorruptFileError, match=r"green_tripdata_2021-01\.parquet.*truncated"):
        client.fetch_month("green", JANUARY)

    assert cache_listing(tmp_path / "cache") == []


def test_a_dropped_connection_mid_file_is_retried_and_never_cached_half_written(
    tlc_server: FileServer, tmp_path: Path
) -> None:
    content = parquet_bytes(tlc_month())
    tlc_server.add_file(JANUARY_FILE, content)
    tlc_server.script(JANUARY_FILE, [ScriptedResponse(truncate_to=len(content) // 3)])
    client = make_client(tlc_server, tmp_path / "cache", max_attempts=2)

    cached = client.fetch_month("green", JANUARY)

    assert cached.path.read_bytes() == content
    assert tlc_server.requests_for(JANUARY_FILE) == ["GET", "GET"]
    assert cache_listing(tmp_path / "cache") == [
        "green_tripdata_2021-01.json",
        JANUARY_FILE,
    ]


def test_a_dropped_connection_every_time_fails_as_transient(
    tlc_server: FileServer, tmp_path: Path
) -> None:
    content = parquet_bytes(tlc_month())
    tlc_server.add_file(JANUARY_FILE, content)
    tlc_server.script(JANUARY_FILE, [ScriptedResponse(truncate_to=100)] * 2)
    client = make_client(tlc_server, tmp_path / "cache", max_attempts=2)

    with pytest.raises(TransientTLCError, match=r"green_tripdata_2021-01\.parquet"):
        client.fetch_month("green", JANUARY)

    assert cache_listing(tmp_path / "cache") == []


def test_a_page_that_is_not_parquet_is_corrupt(tlc_server: FileServer, tmp_path: Path) -> None:
    tlc_server.add_file(JANUARY_FILE, b"<html><body>Access denied</body></html>")

    with pytest.raises(CorruptFileError, match=r"the file is a web page \(HTML\), not parquet"):
        make_client(tlc_server, tmp_path / "cache").fetch_month("green", JANUARY)


def test_a_parquet_file_cut_short_is_corrupt(tlc_server: FileServer, tmp_path: Path) -> None:
    # The server announces the short length, so only the file itself shows it is cut.
    whole = parquet_bytes(tlc_month())
    tlc_server.add_file(JANUARY_FILE, whole[: len(whole) // 2])

    with pytest.raises(CorruptFileError, match=r"not a readable parquet file .*truncated"):
        make_client(tlc_server, tmp_path / "cache").fetch_month("green", JANUARY)
    assert cache_listing(tmp_path / "cache") == []


def test_a_parquet_file_without_rows_is_corrupt(tlc_server: FileServer, tmp_path: Path) -> None:
    tlc_server.add_file(JANUARY_FILE, parquet_bytes(tlc_month().clear()))

    with pytest.raises(
        CorruptFileError, match=r"green_tripdata_2021-01\.parquet: the parquet file holds no rows"
    ):
        make_client(tlc_server, tmp_path / "cache").fetch_month("green", JANUARY)
    assert cache_listing(tmp_path / "cache") == []


def test_head_reports_the_published_version_and_notices_a_replaced_file(
    tlc_server: FileServer, tmp_path: Path
) -> None:
    first = parquet_bytes(tlc_month())
    tlc_server.add_file(JANUARY_FILE, first)
    client = make_client(tlc_server, tmp_path / "cache")

    info = client.head_month("green", JANUARY)
    tlc_server.add_file(JANUARY_FILE, parquet_bytes(tlc_month(pl.Int32)))
    replaced = client.head_month("green", JANUARY)

    assert info.url == tlc_server.url(JANUARY_FILE)
    assert info.content_length == len(first)
    assert info.etag is not None and info.last_modified is not None
    assert replaced.version != info.version
    assert tlc_server.requests_for(JANUARY_FILE) == ["HEAD", "HEAD"]
    assert cache_listing(tmp_path / "cache") == []


def test_head_without_validators_falls_back_to_date_and_length(
    tlc_server: FileServer, tmp_path: Path
) -> None:
    tlc_server.send_validators = False
    tlc_server.add_file(JANUARY_FILE, b"x" * 10)

    info = make_client(tlc_server, tmp_path / "cache").head_month("green", JANUARY)

    assert (info.etag, info.last_modified, info.content_length) == (None, None, 10)
    assert info.version == "None|10"


def test_head_of_an_unpublished_month_is_a_404(tlc_server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(MonthNotPublishedError):
        make_client(tlc_server, tmp_path / "cache").head_month("green", date(2031, 1, 1))
    assert tlc_server.requests_for("green_tripdata_2031-01.parquet") == ["HEAD"]


def test_zone_lookup_is_read_and_typed(tlc_server: FileServer, tmp_path: Path) -> None:
    tlc_server.add_file(
        "taxi_zone_lookup.csv",
        b'"LocationID","Borough","Zone","service_zone"\r\n'
        b'2,"Queens","Jamaica Bay","Boro Zone"\r\n1,"EWR","Newark Airport","EWR"\r\n',
    )

    zones = make_client(tlc_server, tmp_path / "cache").read_zones()

    assert zones.schema == pl.Schema(
        {"LocationID": pl.Int32, "Borough": pl.String, "Zone": pl.String, "service_zone": pl.String}
    )
    assert zones.rows() == [
        (1, "EWR", "Newark Airport", "EWR"),
        (2, "Queens", "Jamaica Bay", "Boro Zone"),
    ]


def test_zone_lookup_without_a_column_fails_naming_it(
    tlc_server: FileServer, tmp_path: Path
) -> None:
    tlc_server.add_file(
        "taxi_zone_lookup.csv", b"LocationID,Borough,Zone\r\n1,EWR,Newark Airport\r\n"
    )

    with pytest.raises(TripSchemaError, match=r"taxi_zone_lookup\.csv: .*service_zone missing"):
        make_client(tlc_server, tmp_path / "cache").read_zones()


def tlc_source(server: FileServer, tmp_path: Path, taxi_type: str = "green") -> TripSource:
    return TripSource(
        source="tlc",
        taxi_type=taxi_type,
        base_url=server.base_url,
        zone_lookup_url=server.url("taxi_zone_lookup.csv"),
        cache_dir=str(tmp_path / "cache"),
        max_attempts=2,
        backoff_seconds=0.0,
    )


@pytest.mark.parametrize("id_dtype", [pl.Int32, pl.Int64], ids=["int32 ids", "int64 ids"])
def test_trip_source_reads_one_day_in_the_normalized_schema_whatever_the_id_width(
    tlc_server: FileServer, tmp_path: Path, id_dtype: type[pl.DataType]
) -> None:
    tlc_server.add_file(JANUARY_FILE, parquet_bytes(tlc_month(id_dtype)))

    day = tlc_source(tlc_server, tmp_path).trips_for_day(date(2021, 1, 15))

    assert day.trips.schema == pl.Schema(TRIP_SCHEMA)
    assert day.trips["PULocationID"].to_list() == [74, 75, 41]
    assert day.trips["trip_key"].n_unique() == 3
    assert day.synthetic is False
    assert day.downloaded is True
    assert day.source_description == tlc_server.url(JANUARY_FILE)
    assert day.source_version == sha256_of(tmp_path / "cache" / JANUARY_FILE)


def test_trip_source_downloads_a_month_once_for_all_its_days(
    tlc_server: FileServer, tmp_path: Path
) -> None:
    tlc_server.add_file(JANUARY_FILE, parquet_bytes(tlc_month()))
    source = tlc_source(tlc_server, tmp_path)

    first = source.trips_for_day(date(2021, 1, 15))
    second = source.trips_for_day(date(2021, 1, 16))

    assert (first.trips.height, second.trips.height) == (3, 1)
    assert (first.downloaded, second.downloaded) == (True, False)
    assert set(second.trips["trip_key"]).isdisjoint(first.trips["trip_key"])
    assert tlc_server.requests_for(JANUARY_FILE) == ["GET"]


def test_trip_source_reads_yellow_cab_tpep_columns(tlc_server: FileServer, tmp_path: Path) -> None:
    tlc_server.add_file("yellow_tripdata_2021-01.parquet", parquet_bytes(tlc_month(prefix="tpep")))

    day = tlc_source(tlc_server, tmp_path, taxi_type="yellow").trips_for_day(date(2021, 1, 15))

    assert day.trips["pickup_datetime"].to_list()[0] == datetime(2021, 1, 15, 8, 0)
    assert day.trips["dropoff_datetime"].to_list()[0] == datetime(2021, 1, 15, 8, 12)
    assert tlc_server.requests_for("yellow_tripdata_2021-01.parquet") == ["GET"]


def test_trip_source_names_the_file_and_the_missing_column(
    tlc_server: FileServer, tmp_path: Path
) -> None:
    tlc_server.add_file(JANUARY_FILE, parquet_bytes(tlc_month(drop=("DOLocationID",))))

    with pytest.raises(TripSchemaError) as raised:
        tlc_source(tlc_server, tmp_path).trips_for_day(date(2021, 1, 15))

    assert str(raised.value).startswith(f"{JANUARY_FILE}: required column(s) DOLocationID missing")


def test_trip_source_names_the_file_and_an_unusable_column(
    tlc_server: FileServer, tmp_path: Path
) -> None:
    broken = tlc_month().with_columns(pl.Series("trip_distance", ["1.2", "3.4", "n/a", "5.5"]))
    tlc_server.add_file(JANUARY_FILE, parquet_bytes(broken))

    with pytest.raises(
        TripSchemaError,
        match=rf"{JANUARY_FILE}: column trip_distance has 1 value\(s\) that cannot be read as Float64",
    ):
        tlc_source(tlc_server, tmp_path).trips_for_day(date(2021, 1, 15))


def test_trip_source_reports_an_unpublished_month(tlc_server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(MonthNotPublishedError, match=r"green_tripdata_2021-01\.parquet"):
        tlc_source(tlc_server, tmp_path).trips_for_day(date(2021, 1, 15))


def test_trip_source_reads_zones_from_the_lookup_url(
    tlc_server: FileServer, tmp_path: Path
) -> None:
    tlc_server.add_file(
        "taxi_zone_lookup.csv",
        b"LocationID,Borough,Zone,service_zone\r\n1,EWR,Newark Airport,EWR\r\n",
    )

    zones, origin = tlc_source(tlc_server, tmp_path).zones()

    assert zones["Zone"].to_list() == ["Newark Airport"]
    assert origin == tlc_server.url("taxi_zone_lookup.csv")


def test_missing_zone_lookup_names_the_setting_not_a_month(
    tlc_server: FileServer, tmp_path: Path
) -> None:
    with pytest.raises(TLCError, match=r"taxi_zone_lookup\.csv does not exist") as raised:
        make_client(tlc_server, tmp_path / "cache").read_zones()

    assert "ML_ASSETS_TLC_ZONE_LOOKUP_URL" in str(raised.value)
    assert not isinstance(raised.value, MonthNotPublishedError)


# --- The cache is trusted only as far as it is valid ------------------------------------------


def put_in_cache(cache_dir: Path, content: bytes, name: str = JANUARY_FILE) -> Path:
    """A month in the cache as an earlier ml_assets left it: the file and a checksum sidecar."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / name
    path.write_bytes(content)
    path.with_suffix(".json").write_text(
        json.dumps({"url": f"http://tlc.invalid/{name}", "sha256": sha256_of(path), "etag": None})
    )
    return path


@pytest.mark.parametrize(
    ("bad_month", "culprit"),
    [
        (tlc_month(drop=("DOLocationID",)), "required column(s) DOLocationID missing"),
        (
            tlc_month().with_columns(pl.Series("trip_distance", ["1.2", "3.4", "n/a", "5.5"])),
            "column trip_distance has 1 value(s) that cannot be read as Float64",
        ),
    ],
    ids=["column missing", "column of the wrong type"],
)
def test_a_cached_month_that_fails_validation_is_dropped_and_fetched_again_once_fixed(
    tlc_server: FileServer, tmp_path: Path, bad_month: pl.DataFrame, culprit: str
) -> None:
    cache = tmp_path / "cache"
    put_in_cache(cache, parquet_bytes(bad_month))
    source = tlc_source(tlc_server, tmp_path)

    with pytest.raises(TripSchemaError) as raised:
        source.trips_for_day(date(2021, 1, 15))

    message = str(raised.value)
    assert message.startswith(f"{JANUARY_FILE}: {culprit}")
    assert f"the cached copy {cache / JANUARY_FILE} was dropped" in message
    assert f"the next run downloads {tlc_server.url(JANUARY_FILE)} again" in message
    assert cache_listing(cache) == []
    assert tlc_server.requests == []  # the bad copy was judged without asking the source

    # The source is fixed: the next read downloads the month and succeeds, no clean-up needed.
    good = parquet_bytes(tlc_month())
    tlc_server.add_file(JANUARY_FILE, good)
    day = source.trips_for_day(date(2021, 1, 15))

    assert day.trips.height == 3
    assert day.downloaded is True
    assert (cache / JANUARY_FILE).read_bytes() == good
    assert tlc_server.requests_for(JANUARY_FILE) == ["GET"]


def test_a_cached_month_served_twice_over_is_dropped(
    tlc_server: FileServer, tmp_path: Path
) -> None:
    # Every row repeated in full: more repeated trips than the trip schema tolerates.
    put_in_cache(tmp_path / "cache", parquet_bytes(pl.concat([tlc_month(), tlc_month()])))

    with pytest.raises(TripSchemaError, match=rf"^{JANUARY_FILE}: .*was dropped"):
        tlc_source(tlc_server, tmp_path).trips_for_day(date(2021, 1, 15))

    assert cache_listing(tmp_path / "cache") == []


def test_a_cached_file_that_is_not_parquet_is_dropped(
    tlc_server: FileServer, tmp_path: Path
) -> None:
    whole = parquet_bytes(tlc_month())
    put_in_cache(tmp_path / "cache", whole[: len(whole) // 2])

    with pytest.raises(CorruptFileError, match=rf"^{JANUARY_FILE}: not a readable parquet file"):
        tlc_source(tlc_server, tmp_path).trips_for_day(date(2021, 1, 15))

    assert cache_listing(tmp_path / "cache") == []


def test_a_download_that_fails_validation_is_never_cached(
    tlc_server: FileServer, tmp_path: Path
) -> None:
    tlc_server.add_file(JANUARY_FILE, parquet_bytes(tlc_month(drop=("PULocationID",))))
    client = make_client(tlc_server, tmp_path / "cache")

    with pytest.raises(TripSchemaError) as raised:
        client.fetch_month("green", JANUARY)

    assert str(raised.value) == (
        f"{JANUARY_FILE}: required column(s) PULocationID missing (found: "
        + ", ".join(tlc_month(drop=("PULocationID",)).columns)
        + f") (downloaded from {tlc_server.url(JANUARY_FILE)}, not cached)"
    )
    assert cache_listing(tmp_path / "cache") == []
    tlc_server.add_file(JANUARY_FILE, parquet_bytes(tlc_month()))
    assert client.fetch_month("green", JANUARY).downloaded is True


def test_refetch_replaces_the_cached_copy_only_with_a_valid_file(
    tlc_server: FileServer, tmp_path: Path
) -> None:
    first = parquet_bytes(tlc_month())
    tlc_server.add_file(JANUARY_FILE, first)
    client = make_client(tlc_server, tmp_path / "cache")
    cached = client.fetch_month("green", JANUARY)
    sidecar = (tmp_path / "cache" / "green_tripdata_2021-01.json").read_text()

    # The source now serves a broken file: a re-fetch fails and keeps the good copy as it was.
    tlc_server.add_file(JANUARY_FILE, parquet_bytes(tlc_month(drop=("trip_distance",))))
    with pytest.raises(TripSchemaError, match=r"not cached; the cached copy is kept\)$"):
        client.fetch_month("green", JANUARY, refetch=True)
    assert cached.path.read_bytes() == first
    assert (tmp_path / "cache" / "green_tripdata_2021-01.json").read_text() == sidecar
    assert client.fetch_month("green", JANUARY).downloaded is False

    # A valid new file replaces it.
    second = parquet_bytes(tlc_month(pl.Int32))
    tlc_server.add_file(JANUARY_FILE, second)
    refetched = client.fetch_month("green", JANUARY, refetch=True)

    assert refetched.downloaded is True
    assert refetched.path.read_bytes() == second
    assert refetched.sha256 == sha256_of(refetched.path) != cached.sha256
    assert client.fetch_month("green", JANUARY).sha256 == refetched.sha256
    assert tlc_server.requests_for(JANUARY_FILE) == ["GET", "GET", "GET"]
    assert cache_listing(tmp_path / "cache") == ["green_tripdata_2021-01.json", JANUARY_FILE]


def test_a_refused_request_is_a_rejected_request(tlc_server: FileServer, tmp_path: Path) -> None:
    tlc_server.script(JANUARY_FILE, [403])

    with pytest.raises(RequestRejectedError, match=r"answered HTTP 403"):
        make_client(tlc_server, tmp_path / "cache").fetch_month("green", JANUARY)


# --- Every network call has a total deadline ---------------------------------------------------


@contextmanager
def trickling_server(length: int, every_seconds: float) -> Iterator[str]:
    """A loopback server that answers 200 at once, then sends its body one byte at a time."""
    stop = threading.Event()

    def serve(listener: socket.socket) -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                connection.recv(65536)
                connection.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                    + f"Content-Length: {length}\r\n\r\n".encode()
                )
                try:
                    for _ in range(length):
                        if stop.wait(every_seconds):
                            break
                        connection.sendall(b"x")
                except OSError:
                    pass

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.settimeout(5)
        thread = threading.Thread(target=serve, args=(listener,), daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{listener.getsockname()[1]}"
        finally:
            stop.set()


def test_a_source_that_never_answers_fails_at_the_deadline_naming_url_and_deadline(
    tmp_path: Path,
) -> None:
    with silent_url() as base_url:
        client = TLCClient(
            tmp_path / "cache",
            base_url=base_url,
            read_timeout_seconds=0.4,
            deadline_seconds=1.0,
            max_attempts=50,
            backoff_seconds=0.05,
        )
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError) as raised:
            client.fetch_month("green", JANUARY)
        elapsed = time.monotonic() - started

    assert 0.9 <= elapsed < 2.5
    message = str(raised.value)
    assert message.startswith(f"GET {base_url}/{JANUARY_FILE}: no complete answer within the 1 s")
    assert "read timeout 0.4 s" in message or "timed out" in message
    assert isinstance(raised.value, TransientTLCError)  # the step's RetryPolicy may try again
    assert cache_listing(tmp_path / "cache") == []


def test_a_source_that_trickles_bytes_cannot_stretch_a_download_past_the_deadline(
    tmp_path: Path,
) -> None:
    # Each byte comes well within the read timeout, so only the total deadline can stop it.
    with trickling_server(length=10_000, every_seconds=0.05) as base_url:
        client = TLCClient(
            tmp_path / "cache",
            base_url=base_url,
            read_timeout_seconds=5.0,
            deadline_seconds=1.0,
            max_attempts=3,
            backoff_seconds=0.0,
        )
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError, match=r"did not finish within the 1 s deadline"):
            client.fetch_month("green", JANUARY)
        elapsed = time.monotonic() - started

    assert elapsed < 2.0
    assert cache_listing(tmp_path / "cache") == []


def test_trip_source_passes_its_network_settings_to_the_client(tmp_path: Path) -> None:
    client = TripSource(
        source="tlc",
        cache_dir=str(tmp_path),
        connect_timeout_seconds=3,
        read_timeout_seconds=7,
        deadline_seconds=42,
    ).client()

    assert client.http.limits == HttpLimits(
        connect_timeout_seconds=3, read_timeout_seconds=7, deadline_seconds=42
    )
    defaults = TripSource(source="tlc", cache_dir=str(tmp_path)).client()
    assert defaults.http.limits == HttpLimits(
        connect_timeout_seconds=10, read_timeout_seconds=30, deadline_seconds=300
    )


def test_an_empty_download_is_named_empty(tlc_server: FileServer, tmp_path: Path) -> None:
    tlc_server.add_file(JANUARY_FILE, b"")

    with pytest.raises(CorruptFileError, match=r"the file is empty \(0 bytes\)"):
        make_client(tlc_server, tmp_path / "cache").fetch_month("green", JANUARY)
    assert cache_listing(tmp_path / "cache") == []


def test_a_file_replaced_at_the_source_is_downloaded_again_when_revalidated(
    tlc_server: FileServer, tmp_path: Path
) -> None:
    tlc_server.add_file(JANUARY_FILE, parquet_bytes(tlc_month()))
    client = make_client(tlc_server, tmp_path / "cache")
    first = client.fetch_month("green", JANUARY)
    assert client.fetch_month("green", JANUARY, revalidate=True).sha256 == first.sha256
    assert tlc_server.requests_for(f"/{JANUARY_FILE}") == ["GET", "HEAD"]

    tlc_server.add_file(JANUARY_FILE, parquet_bytes(tlc_month().head(3)))
    replaced = client.fetch_month("green", JANUARY, revalidate=True)

    assert replaced.downloaded and replaced.sha256 != first.sha256
    assert tlc_server.requests_for(f"/{JANUARY_FILE}") == ["GET", "HEAD", "HEAD", "GET"]


def test_an_unreachable_source_leaves_the_checked_copy_in_use(
    tlc_server: FileServer, tmp_path: Path
) -> None:
    tlc_server.add_file(JANUARY_FILE, parquet_bytes(tlc_month()))
    client = make_client(tlc_server, tmp_path / "cache", max_attempts=3)
    first = client.fetch_month("green", JANUARY)
    tlc_server.script(f"/{JANUARY_FILE}", [503, 503, 503])

    kept = client.fetch_month("green", JANUARY, revalidate=True)

    assert kept.sha256 == first.sha256 and not kept.downloaded
    # Asked once, not retried: a source that is down must not hold up the run.
    assert tlc_server.requests_for(f"/{JANUARY_FILE}") == ["GET", "HEAD"]


def test_a_file_of_another_month_is_refused_naming_both_months(
    tlc_server: FileServer, tmp_path: Path
) -> None:
    december = tlc_month().with_columns(
        pl.col("lpep_pickup_datetime", "lpep_dropoff_datetime").dt.offset_by("-1mo")
    )
    tlc_server.add_file(JANUARY_FILE, parquet_bytes(december))

    with pytest.raises(TripSchemaError) as raised:
        make_client(tlc_server, tmp_path / "cache").fetch_month("green", JANUARY)
    assert str(raised.value).startswith(
        f"{JANUARY_FILE}: only 0 of 4 trips are picked up in 2021-01 (by month: 2020-12: 4); "
        "this is not the file of 2021-01"
    )
    assert cache_listing(tmp_path / "cache") == []
