"""Row digests, the identity of a trip: stable, from content only, and cheap."""

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from ml_assets.lib.row_digest import row_digests
from ml_assets_tests.conftest import SHARED_TLC_DIR


def typed_rows() -> pl.DataFrame:
    """Two rows of every dtype the digest encodes, nulls included."""
    return pl.DataFrame(
        {
            "VendorID": pl.Series([2, None], dtype=pl.Int64),
            "narrow_id": pl.Series([7, 8], dtype=pl.Int32),
            "big": pl.Series([2**64 - 1, 0], dtype=pl.UInt64),
            "flag": [True, None],
            "fare": [8.5, float("nan")],
            "small_fare": pl.Series([1.25, -0.0], dtype=pl.Float32),
            "pickup": [datetime(2021, 1, 5, 7, 0, 1, 5), None],
            "pickup_ns": pl.Series([datetime(2021, 1, 5, 7), datetime(2021, 1, 6)]).cast(
                pl.Datetime("ns")
            ),
            "dropoff_utc": pl.Series([datetime(2021, 1, 5, 8), None]).dt.replace_time_zone("UTC"),
            "wait": [timedelta(minutes=3), timedelta(0)],
            "clock": [time(7, 30), time(0)],
            "day": [date(2021, 1, 5), date(1970, 1, 1)],
            "store_and_fwd_flag": ["N", None],
            "category": pl.Series(["a", "b"], dtype=pl.Categorical),
            "amount": pl.Series([Decimal("1.10"), Decimal("2.00")], dtype=pl.Decimal(10, 2)),
            "raw_bytes": [b"\x00\x01", b""],
            "ehail_fee": pl.Series([None, None], dtype=pl.Null),
            "nested": [[1, 2], None],
        }
    )


# Pinned values: a change here changes every stored trip key. Only change them together with the
# code versions of what stores trip keys (RAW_TRIPS_CODE_VERSION, SAMPLE_VERSION).
PINNED = ["a1616df3370d1a2449caf04881293455", "27a86f9d06dc085a5fa6f8b8e641e2b9"]


def test_digests_are_pinned_across_library_versions() -> None:
    digests = row_digests(typed_rows())
    assert digests.to_list() == PINNED


def test_a_row_has_the_same_digest_on_every_read_in_any_column_order(tmp_path: Path) -> None:
    frame = typed_rows().drop("category", "nested")  # parquet round trips these differently
    path = tmp_path / "month.parquet"
    frame.write_parquet(path)

    first = row_digests(pl.read_parquet(path))
    again = row_digests(pl.read_parquet(path))
    reordered = row_digests(pl.read_parquet(path).select(reversed(frame.columns)))

    assert first.to_list() == again.to_list() == reordered.to_list()
    assert first.to_list() == row_digests(frame).to_list()


def test_a_digest_depends_on_its_own_row_only() -> None:
    frame = typed_rows()
    digests = row_digests(frame).to_list()

    assert row_digests(frame.reverse()).to_list() == digests[::-1]
    assert row_digests(frame.tail(1)).to_list() == digests[1:]
    assert row_digests(pl.concat([frame, frame])).to_list() == digests * 2


@pytest.mark.parametrize(
    ("column", "other"),
    [
        ("VendorID", 1),
        ("narrow_id", 9),
        ("big", 2**63),
        ("flag", False),
        ("fare", 8.51),
        ("small_fare", 1.5),
        ("pickup", datetime(2021, 1, 5, 7, 0, 1, 6)),
        ("pickup_ns", datetime(2021, 1, 5, 7, 0, 1)),
        ("dropoff_utc", None),
        ("wait", timedelta(minutes=4)),
        ("clock", time(7, 31)),
        ("day", date(2021, 1, 6)),
        ("store_and_fwd_flag", "Y"),
        ("category", "c"),
        ("amount", Decimal("1.11")),
        ("raw_bytes", b"\x00\x02"),
        ("ehail_fee", None),
        ("nested", [1, 3]),
    ],
)
def test_any_changed_value_changes_the_digest(column: str, other: object) -> None:
    frame = typed_rows()
    if column == "ehail_fee":  # an all-null column that gets a value
        changed = frame.with_columns(pl.Series("ehail_fee", [0.0, None]))
    else:
        values = frame[column].to_list()
        values[0] = other
        changed = frame.with_columns(pl.Series(column, values, dtype=frame.schema[column]))

    before, after = row_digests(frame).to_list(), row_digests(changed).to_list()

    assert before[0] != after[0]
    assert before[1] == after[1]


def test_nulls_zeros_and_empty_strings_are_different_values() -> None:
    digests = row_digests(
        pl.DataFrame({"tip_amount": [None, 0.0, 0.0], "flag": ["", "", None]})
    ).to_list()
    assert len(set(digests)) == 3


def test_equal_values_of_different_widths_or_signs_of_zero_are_one_value() -> None:
    wide = pl.DataFrame({"id": pl.Series([1, 2], dtype=pl.Int64), "fare": [1.25, 0.0]})
    narrow = wide.with_columns(pl.col("id").cast(pl.Int32), pl.col("fare").cast(pl.Float32))
    signed_zero = wide.with_columns(pl.Series("fare", [1.25, -0.0]))

    assert row_digests(wide).to_list() == row_digests(narrow).to_list()
    assert row_digests(wide).to_list() == row_digests(signed_zero).to_list()


def test_the_column_name_is_part_of_the_value() -> None:
    tip = pl.DataFrame({"tip_amount": [1.0], "tolls_amount": [0.0]})
    tolls = pl.DataFrame({"tip_amount": [0.0], "tolls_amount": [1.0]})
    assert row_digests(tip).item() != row_digests(tolls).item()


def test_wide_and_empty_frames() -> None:
    wide = pl.DataFrame({f"c{n:03}": [n, None] for n in range(130)})
    last_null = wide.with_columns(pl.Series("c129", [None, None], dtype=pl.Int64))

    assert row_digests(pl.DataFrame({"a": pl.Series([], dtype=pl.Int64)})).to_list() == []
    assert row_digests(wide)[0] != row_digests(last_null)[0]
    assert row_digests(wide)[1] == row_digests(last_null)[1]
    assert all(len(digest) == 32 for digest in row_digests(wide))


def test_every_trip_of_a_real_month_gets_a_digest_of_its_own() -> None:
    path = SHARED_TLC_DIR / "green_tripdata_2021-01.parquet"
    if not path.exists():
        pytest.skip(f"the real TLC month is not available at {path}")
    raw = pl.read_parquet(path)

    digests = row_digests(raw)

    # No row of the month repeats another in full, so no two digests are equal. (What a digest
    # costs is measured by `python -m bench features`, side by side, not asserted here.)
    assert digests.n_unique() == raw.height == 76518
    assert digests.str.len_bytes().unique().to_list() == [32]
