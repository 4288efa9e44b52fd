"""A stable 128-bit digest of every row of a frame: what makes a trip's identity its content.

`row_digests(frame)` gives one 32-character hex string per row that depends only on that row's
column names and values, never on the row's position, the other rows, the column order or the
library versions installed. polars' own `hash_rows` is not used: polars documents that its hashes
may change between versions, and a trip key must stay the same for as long as the file does.

How a row is digested (pinned by a test with fixed expected digests; change nothing here without
bumping the code versions of what stores the digests):

- Every column is turned into one unsigned 64-bit word per row: integers and booleans as int64,
  floats as the bits of their float64 value (-0.0 read as 0.0, every NaN as one NaN), datetimes
  and durations as int64 microseconds, dates as int64 days, times as int64 nanoseconds, strings
  (and categoricals, decimals, binaries and anything else) as the first 8 bytes of the BLAKE2b
  digest of their UTF-8 text (or bytes, or `repr`). A null becomes 0, and is told apart by a
  null flag (below).
- Two 64-bit lanes, each with its own seed and its own per-column constant (from the BLAKE2b digest
  of the column name), absorb the columns in name order: `lane = mix(lane ^ word ^ constant)`,
  with `mix` the SplitMix64 finalizer (a bijection of 64-bit words). Then each lane absorbs the
  row's null flags, 64 columns per word: `lane = mix(lane ^ flags)`.
- The digest is both lanes as 32 hex digits.

Numbers are handled by numpy on whole columns and strings once per distinct value, so a month of
76,518 green trips with 20 columns takes about 15 ms.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    # numpy is imported where a digest is computed: every Dagster process loads the code
    # location, which imports this module, and most of them never digest a row.
    import numpy as np

DIGEST_HEX_CHARS = 32

_SEEDS = (0x9E3779B97F4A7C15, 0xD1B54A32D192ED03)
_MIX_1 = 0xBF58476D1CE4E5B9
_MIX_2 = 0x94D049BB133111EB
_HEX_PAIRS_TEXT = b"".join(f"{byte:02x}".encode("ascii") for byte in range(256))


def _mix(words: np.ndarray, shifted: np.ndarray) -> None:
    """SplitMix64's finalizer, in place: every input bit changes about half the output bits.

    `shifted` is scratch space of the shape of `words`, reused from column to column.
    """
    import numpy as np

    np.right_shift(words, np.uint64(30), out=shifted)
    words ^= shifted
    words *= np.uint64(_MIX_1)
    np.right_shift(words, np.uint64(27), out=shifted)
    words ^= shifted
    words *= np.uint64(_MIX_2)
    np.right_shift(words, np.uint64(31), out=shifted)
    words ^= shifted


def _blake64(data: bytes, person: bytes = b"") -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, person=person).digest(), "little")


def _column_constants(name: str) -> np.ndarray:
    """One constant per lane, from the column's name: the same values in another column differ."""
    import numpy as np

    digest = hashlib.blake2b(name.encode(), digest_size=16, person=b"ml_assets column").digest()
    return np.frombuffer(digest, dtype="<u8").astype(np.uint64).reshape(2, 1)


def _words(series: pl.Series) -> np.ndarray:
    """One uint64 word per value of `series` (nulls as 0), as described in the module docstring."""
    import numpy as np

    dtype = series.dtype
    if dtype == pl.Null:
        return np.zeros(series.len(), dtype=np.uint64)
    if dtype == pl.UInt64:
        return _without_nulls(series, 0).to_numpy().astype(np.uint64, copy=False)
    if dtype.is_integer() or dtype == pl.Boolean:
        return _without_nulls(series.cast(pl.Int64), 0).to_numpy().view(np.uint64)
    if dtype.is_float():
        # A new array (numpy's view of a polars column is read-only), in which -0.0 + 0.0 is 0.0:
        # the two zeros are one value. Every other value is left as it is.
        values = _without_nulls(series.cast(pl.Float64), 0.0).to_numpy() + 0.0
        nans = np.isnan(values)
        if nans.any():
            values[nans] = np.nan  # and so is every NaN
        return values.view(np.uint64)
    if isinstance(dtype, pl.Datetime | pl.Duration):
        physical = series.dt.cast_time_unit("us").to_physical().cast(pl.Int64)
        return _without_nulls(physical, 0).to_numpy().view(np.uint64)
    if dtype in (pl.Date, pl.Time):
        physical = series.to_physical().cast(pl.Int64)
        return _without_nulls(physical, 0).to_numpy().view(np.uint64)
    return _hashed_values(series)


def _without_nulls(series: pl.Series, zero: float) -> pl.Series:
    """`series` with its nulls as `zero`; untouched (no copy) when it has none, as most have."""
    return series.fill_null(zero) if series.null_count() else series


def _hashed_values(series: pl.Series) -> np.ndarray:
    """Text-like values hashed once per distinct value (TLC's strings are flags such as Y/N)."""
    import numpy as np

    if series.dtype == pl.Binary:
        as_bytes = series
        encode = bytes
    elif series.dtype in (pl.String, pl.Categorical) or isinstance(
        series.dtype, pl.Enum | pl.Decimal
    ):
        as_bytes = series.cast(pl.String)
        encode = str.encode
    else:  # nested or exotic: the Python value's repr, slowly, but the same on every read
        as_bytes = pl.Series(
            [None if value is None else repr(value) for value in series.to_list()],
            dtype=pl.String,
        )
        encode = str.encode
    distinct = as_bytes.drop_nulls().unique()
    words = pl.Series(
        "word",
        [_blake64(encode(value), person=b"ml_assets value") for value in distinct.to_list()],
        dtype=pl.UInt64,
    )
    # A left join maps each value to its word in about half the time of replace_strict; a null
    # matches nothing and becomes 0.
    mapped = (
        as_bytes.alias("value")
        .to_frame()
        .join(
            pl.DataFrame([distinct.alias("value"), words]),
            on="value",
            how="left",
            maintain_order="left",
        )
        .get_column("word")
        .fill_null(0)
    )
    return mapped.to_numpy().astype(np.uint64, copy=False)


def row_digests(frame: pl.DataFrame) -> pl.Series:
    """A 32-hex-digit digest of each row of `frame`, from its column names and values only."""
    import numpy as np

    rows = frame.height
    # Both lanes in one array, so each step is one numpy operation over both.
    lanes = np.repeat(np.asarray(_SEEDS, dtype=np.uint64).reshape(2, 1), rows, axis=1)
    scratch = np.empty_like(lanes)
    names = sorted(frame.columns)
    # Unsigned overflow is the point of the arithmetic, not an error.
    with np.errstate(over="ignore"):
        for name in names:
            lanes ^= _words(frame.get_column(name))
            lanes ^= _column_constants(name)
            _mix(lanes, scratch)
        for null_word in _null_flag_words(frame, names):
            lanes ^= null_word
            _mix(lanes, scratch)
    return _hex_strings(lanes)


def _null_flag_words(frame: pl.DataFrame, names: list[str]) -> list[np.ndarray]:
    """The rows' null flags, 64 columns per word: bit `i % 64` of word `i // 64` is set when the
    `i`-th column in name order is null. Computed by polars in one pass over the columns."""
    import numpy as np

    words: list[np.ndarray] = []
    for first in range(0, len(names), 64):
        flags = [
            pl.col(name).is_null().cast(pl.UInt64) * pl.lit(1 << bit, dtype=pl.UInt64)
            for bit, name in enumerate(names[first : first + 64])
            if frame.get_column(name).null_count()
        ]
        if not flags:
            words.append(np.zeros(frame.height, dtype=np.uint64))
            continue
        word = frame.select(pl.reduce(lambda left, right: left | right, flags)).to_series()
        words.append(word.to_numpy().astype(np.uint64))
    return words


def _hex_strings(lanes: np.ndarray) -> pl.Series:
    """Both lanes of each row as 32 lowercase hex digits (big-endian), as a polars string column.

    One table lookup per byte gives its two hex digits (a little-endian uint16 of two ASCII
    characters). Polars takes the digits as fixed-size arrays of bytes without a copy and casts
    them to strings natively: no Python object per row, where a numpy byte-string array went
    through one each (three times as long), and no pyarrow, which an ingestion step does not
    otherwise import.
    """
    import numpy as np

    row_bytes = np.ascontiguousarray(lanes.T, dtype=">u8").view(np.uint8)
    digits = np.frombuffer(_HEX_PAIRS_TEXT, dtype="<u2")[row_bytes].view(np.uint8)
    return (
        pl.Series(
            "digest",
            digits.reshape(-1, DIGEST_HEX_CHARS),
            dtype=pl.Array(pl.UInt8, DIGEST_HEX_CHARS),
        )
        .cast(pl.List(pl.UInt8))
        .cast(pl.Binary)
        .cast(pl.String)
    )
