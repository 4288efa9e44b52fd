"""The TLC publication sensor against a real HTTP server on 127.0.0.1."""

import io
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from ml_assets.lib.publication import (
    dump_seen,
    forget_outdated_cached_month,
    months_between,
    parse_seen,
)
from ml_assets.lib.sample_source import sample_raw_trips
from ml_assets.resources.trip_source import TripSource
from ml_assets.sensors.publication import (
    FILE_VERSION_TAG,
    build_publication_sensor,
    month_partition_range,
)
from ml_assets_tests.graph import DAYS
from ml_assets_tests.http_fixtures import FileServer, LoopbackHTTPServer

JANUARY = "green_tripdata_2021-01.parquet"
FEBRUARY = "green_tripdata_2021-02.parquet"


def month_file(*days: date) -> bytes:
    """A small month file in TLC's raw green layout (a few days of synthetic trips)."""
    buffer = io.BytesIO()
    pl.concat([sample_raw_trips(day) for day in days]).write_parquet(buffer)
    return buffer.getvalue()


def tlc_source(base_url: str, cache_dir: Path) -> TripSource:
    # One attempt per request: a down server is reported on this tick, without backoff sleeps.
    return TripSource(source="tlc", base_url=base_url, cache_dir=str(cache_dir), max_attempts=1)


def evaluate(source: TripSource, cursor: str | None = None):
    with dg.build_sensor_context(cursor=cursor, resources={"trip_source": source}) as context:
        return build_publication_sensor(DAYS).evaluate_tick(context)


@pytest.fixture
def published(tlc_server: FileServer) -> FileServer:
    tlc_server.add_file(JANUARY, month_file(date(2021, 1, 4), date(2021, 1, 5)))
    tlc_server.add_file(FEBRUARY, month_file(date(2021, 2, 1)))
    return tlc_server


def test_new_months_each_request_one_run_over_their_days(published: FileServer, tmp_path: Path):
    tick = evaluate(tlc_source(published.base_url, tmp_path / "cache"))

    # One HEAD per month from the first partition's month to this month; nothing downloaded.
    watched = months_between(date(2021, 1, 1), date.today())
    assert len(published.requests) == len(watched)
    assert {request.method for request in published.requests} == {"HEAD"}

    ranges = {
        request.run_key.split("@")[0]: (
            request.tags["dagster/asset_partition_range_start"],
            request.tags["dagster/asset_partition_range_end"],
        )
        for request in tick.run_requests
    }
    assert ranges == {
        JANUARY: ("2021-01-01", "2021-01-31"),
        FEBRUARY: ("2021-02-01", "2021-02-28"),
    }
    assert {request.job_name for request in tick.run_requests} <= {None, "ingestion_job"}
    january_version = (
        tlc_source(published.base_url, tmp_path).client().head_month("green", date(2021, 1, 1))
    )
    january = next(r for r in tick.run_requests if r.run_key.startswith(JANUARY))
    assert january.run_key == f"{JANUARY}@{january_version.version}"
    assert january.tags[FILE_VERSION_TAG] == january_version.etag
    seen = parse_seen(tick.cursor)
    assert set(seen) == {"green/2021-01", "green/2021-02"}
    assert seen["green/2021-01"] == january_version.etag


def test_unchanged_months_skip_and_keep_the_cursor(published: FileServer, tmp_path: Path):
    source = tlc_source(published.base_url, tmp_path / "cache")
    first = evaluate(source)

    second = evaluate(source, cursor=first.cursor)

    assert second.run_requests == []
    assert "no new or changed green month file: 2 unchanged" in second.skip_message
    assert json.loads(second.cursor) == json.loads(first.cursor)


def test_a_changed_etag_requests_that_month_again_and_drops_its_stale_copy(
    published: FileServer, tmp_path: Path
):
    source = tlc_source(published.base_url, tmp_path / "cache")
    client = source.client()
    cached = client.fetch_month("green", date(2021, 1, 1))
    first = evaluate(source)

    published.add_file(JANUARY, month_file(date(2021, 1, 4), date(2021, 1, 6)))
    second = evaluate(source, cursor=first.cursor)

    (request,) = second.run_requests
    assert request.run_key.startswith(f"{JANUARY}@")
    assert request.run_key not in {r.run_key for r in first.run_requests}
    assert parse_seen(second.cursor)["green/2021-01"] == request.tags[FILE_VERSION_TAG]
    assert parse_seen(second.cursor)["green/2021-02"] == parse_seen(first.cursor)["green/2021-02"]
    # The next read downloads the new file instead of serving the outdated copy.
    refreshed = client.fetch_month("green", date(2021, 1, 1))
    assert refreshed.downloaded
    assert refreshed.sha256 != cached.sha256


def test_a_server_that_is_down_gives_a_skip_with_the_reason(tmp_path: Path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    cursor = dump_seen({"green/2021-01": '"abc"'})

    tick = evaluate(tlc_source(f"http://127.0.0.1:{closed_port}", tmp_path / "cache"), cursor)

    assert tick.run_requests == []
    assert tick.skip_message.startswith("could not check TLC publications (HEAD http://127.0.0.1:")
    assert "the next tick tries again" in tick.skip_message
    assert parse_seen(tick.cursor) == {"green/2021-01": '"abc"'}


def test_the_sample_source_is_not_watched(tmp_path: Path):
    tick = evaluate(TripSource(source="sample", cache_dir=str(tmp_path)))

    assert tick.run_requests == []
    assert tick.skip_message.startswith("ML_ASSETS_SOURCE=sample")


def test_the_cursor_round_trips_and_rejects_garbage():
    seen = {"green/2021-01": '"etag-1"', "yellow/2021-02": "Tue, 02 Mar 2021|123"}
    assert parse_seen(dump_seen(seen)) == seen
    assert parse_seen(None) == {}
    with pytest.raises(ValueError, match="expected a JSON object of strings"):
        parse_seen("[1, 2]")


def test_a_changed_size_drops_the_stale_copy_when_the_host_sends_no_etag(
    published: FileServer, tmp_path: Path
):
    published.send_validators = False  # no ETag, no Last-Modified: only Content-Length
    source = tlc_source(published.base_url, tmp_path / "cache")
    client = source.client()
    cached = client.fetch_month("green", date(2021, 1, 1))
    assert cached.etag is None and cached.version == f"None|{cached.size}"
    first = evaluate(source)

    published.add_file(JANUARY, month_file(date(2021, 1, 4), date(2021, 1, 5), date(2021, 1, 6)))
    second = evaluate(source, cursor=first.cursor)

    (request,) = second.run_requests
    assert request.run_key.startswith(f"{JANUARY}@None|")
    refreshed = client.fetch_month("green", date(2021, 1, 1))
    assert refreshed.downloaded
    assert refreshed.size != cached.size


@contextmanager
def last_modified_server(files: dict[str, tuple[bytes, float]]) -> Iterator[str]:
    """A host that sends Last-Modified and Content-Length but no ETag (as some mirrors do).

    `files` maps a path to its content and modification time; change it to republish.
    """

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._answer(send_body=True)

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def _answer(self, *, send_body: bool) -> None:
            found = files.get(self.path.lstrip("/"))
            if found is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            content, modified = found
            self.send_response(200)
            self.send_header("Last-Modified", formatdate(modified, usegmt=True))
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            if send_body:
                self.wfile.write(content)

    server = LoopbackHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_changed_last_modified_drops_the_stale_copy_when_the_host_sends_no_etag(
    tmp_path: Path,
):
    old = month_file(date(2021, 1, 4))
    # Republished at the same size: only Last-Modified tells the versions apart.
    new = old
    files = {JANUARY: (old, 1_600_000_000.0)}
    with last_modified_server(files) as base_url:
        source = tlc_source(base_url, tmp_path / "cache")
        client = source.client()
        cached = client.fetch_month("green", date(2021, 1, 1))
        assert cached.etag is None and cached.last_modified == "Sun, 13 Sep 2020 12:26:40 GMT"
        first = evaluate(source)

        files[JANUARY] = (new, 1_700_000_000.0)
        second = evaluate(source, cursor=first.cursor)

        (request,) = second.run_requests
        assert request.tags[FILE_VERSION_TAG] == f"Tue, 14 Nov 2023 22:13:20 GMT|{len(new)}"
        refreshed = client.fetch_month("green", date(2021, 1, 1))
        assert refreshed.downloaded
        assert refreshed.path.read_bytes() == new
        assert refreshed.last_modified == "Tue, 14 Nov 2023 22:13:20 GMT"


def test_a_cached_copy_of_another_version_is_dropped_for_a_month_not_seen_before(
    published: FileServer, tmp_path: Path
):
    source = tlc_source(published.base_url, tmp_path / "cache")
    client = source.client()
    client.fetch_month("green", date(2021, 1, 1))
    published.add_file(JANUARY, month_file(date(2021, 1, 4), date(2021, 1, 6)))

    # A fresh cursor (the sensor was just turned on): January is "new" to it, yet the cached
    # copy is of the previous version.
    tick = evaluate(source)

    assert any(request.run_key.startswith(f"{JANUARY}@") for request in tick.run_requests)
    assert client.fetch_month("green", date(2021, 1, 1)).downloaded


def test_an_unchanged_version_keeps_the_cached_copy(published: FileServer, tmp_path: Path):
    client = tlc_source(published.base_url, tmp_path / "cache").client()
    cached = client.fetch_month("green", date(2021, 1, 1))

    remote = client.head_month("green", date(2021, 1, 1))

    assert not forget_outdated_cached_month(client, "green", date(2021, 1, 1), remote)
    again = client.fetch_month("green", date(2021, 1, 1))
    assert (again.downloaded, again.sha256, again.version) == (False, cached.sha256, cached.version)


def test_a_month_is_ingested_over_its_days_within_the_partitions() -> None:
    now = datetime(2021, 3, 15, 9, tzinfo=UTC)
    january, march = date(2021, 1, 1), date(2021, 3, 1)

    assert month_partition_range(january, now, date(2021, 1, 10)) == ("2021-01-10", "2021-01-31")
    assert month_partition_range(march, now, january) == ("2021-03-01", "2021-03-14")
    # A historical run (ML_ASSETS_END_DATE) has no partition after its last day.
    assert month_partition_range(january, now, january, date(2021, 1, 7)) == (
        "2021-01-01",
        "2021-01-07",
    )
    assert month_partition_range(march, now, january, date(2021, 1, 7)) is None
