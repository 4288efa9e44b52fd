"""Short, stable fingerprints that change exactly when what they describe changes.

A partition is recomputed only when its fingerprint differs from the one recorded when it was last
materialized; see `ml_assets.assets.partition_cache`.
"""

from __future__ import annotations

import hashlib

import polars as pl


def fingerprint(*parts: str) -> str:
    """A 16-hex-digit digest of `parts` in order (the parts are separated, so ("ab", "c") differs
    from ("a", "bc"))."""
    digest = hashlib.sha256()
    for part in parts:
        encoded = part.encode()
        digest.update(len(encoded).to_bytes(8, "big"))
        digest.update(encoded)
    return digest.hexdigest()[:16]


def frame_fingerprint(frame: pl.DataFrame) -> str:
    """A digest of a small frame's schema and values (its CSV form), for lookup tables."""
    schema = ",".join(f"{name}:{dtype}" for name, dtype in frame.schema.items())
    return fingerprint(schema, frame.write_csv())
