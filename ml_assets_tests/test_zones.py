"""The zone lookup is refused when read if it is empty, header-only, duplicated or non-numeric."""

from pathlib import Path

import polars as pl
import pytest

from ml_assets.failures import PERMANENT_ERRORS
from ml_assets.lib import trip_schema
from ml_assets.lib.sample_source import sample_zones
from ml_assets.lib.tlc_client import TLCClient
from ml_assets.lib.trip_schema import TripSchemaError
from ml_assets.lib.zones import (
    ZONE_SCHEMA,
    ZoneLookupError,
    normalize_zones,
    parse_zone_lookup,
    validate_zones,
)
from ml_assets_tests.conftest import SHARED_TLC_DIR
from ml_assets_tests.http_fixtures import FileServer

HEADER = b"LocationID,Borough,Zone,service_zone\n"
NAME = "taxi_zone_lookup.csv"


def lookup(*rows: str) -> bytes:
    return HEADER + "".join(f"{row}\n" for row in rows).encode()


def test_a_lookup_is_typed_and_sorted() -> None:
    zones = parse_zone_lookup(
        lookup("2,Queens,Jamaica Bay,Boro Zone", "1,EWR,Newark Airport,EWR"), source_name=NAME
    )

    assert zones.schema == pl.Schema(ZONE_SCHEMA)
    assert zones.rows() == [
        (1, "EWR", "Newark Airport", "EWR"),
        (2, "Queens", "Jamaica Bay", "Boro Zone"),
    ]


def test_the_real_lookup_passes() -> None:
    path = SHARED_TLC_DIR / NAME
    if not path.exists():
        pytest.skip(f"the real zone lookup is not available at {path} (a shared data directory)")

    zones = parse_zone_lookup(path.read_bytes(), source_name=path.name)

    assert zones.height == 265
    assert zones["LocationID"].to_list() == list(range(1, 266))


def test_the_sample_lookup_passes_validation() -> None:
    zones = sample_zones()
    assert validate_zones(zones, source_name="sample").equals(zones)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"",
            "taxi_zone_lookup.csv: the zone lookup is empty (0 bytes): expected a CSV with the "
            "header LocationID,Borough,Zone,service_zone and one row per zone",
        ),
        (b"\n\n", "taxi_zone_lookup.csv: the zone lookup is empty (2 bytes)"),
        (
            HEADER,
            "taxi_zone_lookup.csv: the zone lookup has a header but no zones: every trip would "
            "get borough 'Unknown'",
        ),
        (
            lookup("1,EWR,Newark Airport,EWR", "2,Queens,Jamaica Bay,Boro Zone", "1,EWR,Dup,EWR"),
            "taxi_zone_lookup.csv: 1 LocationID(s) appear more than once: 1 (lines 2, 4); each "
            "zone must have one row",
        ),
        (
            lookup("1,EWR,Newark Airport,EWR", "two,Queens,Jamaica Bay,Boro Zone", ",Bronx,X,Y"),
            "taxi_zone_lookup.csv: column LocationID holds 2 value(s) that are not whole numbers: "
            "'two' on line 3, empty on line 4",
        ),
        (
            b"LocationID,Borough,Zone\n1,EWR,Newark Airport\n",
            "taxi_zone_lookup.csv: required column(s) service_zone missing "
            "(found: LocationID, Borough, Zone)",
        ),
        (
            b"<html><body>Service unavailable</body></html>\n",
            "taxi_zone_lookup.csv: required column(s) LocationID, Borough, Zone, service_zone "
            "missing (found: <html><body>Service unavailable</body></html>)",
        ),
    ],
    ids=["empty", "blank-lines", "header-only", "duplicate-id", "non-numeric", "column", "html"],
)
def test_a_bad_lookup_is_refused_naming_the_file_and_what_is_wrong(
    content: bytes, message: str
) -> None:
    with pytest.raises(ZoneLookupError) as raised:
        parse_zone_lookup(content, source_name=NAME)
    assert str(raised.value).startswith(message)


def test_many_repeated_ids_are_listed_up_to_five() -> None:
    rows = [f"{n},Queens,Zone {n},Boro Zone" for n in range(1, 8)] * 2
    with pytest.raises(ZoneLookupError) as raised:
        parse_zone_lookup(lookup(*rows), source_name=NAME)
    assert "7 LocationID(s) appear more than once: 1 (lines 2, 9), 2 (lines 3, 10)" in str(
        raised.value
    )
    assert "5 (lines 6, 13) and 2 more; each zone must have one row" in str(raised.value)


def test_a_lookup_error_fails_a_step_without_retries() -> None:
    assert issubclass(ZoneLookupError, TripSchemaError)
    assert issubclass(ZoneLookupError, PERMANENT_ERRORS)


def test_normalize_zones_validates_and_is_still_importable_from_trip_schema() -> None:
    assert trip_schema.normalize_zones is normalize_zones
    assert trip_schema.ZONE_SCHEMA is ZONE_SCHEMA
    header_only = pl.DataFrame(schema=dict.fromkeys(ZONE_SCHEMA, pl.String))
    with pytest.raises(ZoneLookupError, match=r"^zones.csv: the zone lookup has a header but no"):
        normalize_zones(header_only, source_name="zones.csv")


def test_the_tlc_client_refuses_a_header_only_lookup(
    tlc_server: FileServer, tmp_path: Path
) -> None:
    tlc_server.add_file(NAME, HEADER)
    client = TLCClient(
        tmp_path / "cache", base_url=tlc_server.base_url, zone_lookup_url=tlc_server.url(NAME)
    )

    with pytest.raises(ZoneLookupError, match=r"taxi_zone_lookup\.csv: .*header but no zones"):
        client.read_zones()
