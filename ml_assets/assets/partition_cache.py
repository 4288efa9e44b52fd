"""Skip partitions whose source and code are unchanged since they were last materialized.

Each partition of a cached asset is stored with a stamp in its parquet file's footer: the
`cache_key` it was built from (a fingerprint of the asset's code version and of its inputs: the
source file's checksum, the upstream partition's cache key), the run that built it and its
metadata. The key is also in the partition's materialization metadata, for the UI. On the next
run the asset computes the key again before doing any work; when it equals the stamped one, the
partition is not recomputed: its output is `KEEP_STORED` (the file stays as it is) and its new
materialization carries the stamped metadata with `cached: true` and `computed_in_run`.

The stamp lives in the file it describes, written atomically with it: a deleted or rewritten file
can never be mistaken for the one the key was recorded for, and finding every day's key costs one
footer read per day rather than reading a materialization event per day back from the instance.

Dagster's own data versions cannot do this in a single-run backfill: a run over a partition range
records one data version and one input provenance for all its partitions, and Dagster never skips
a requested partition by itself.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import polars as pl

from ml_assets.resources.parquet_io_manager import KEEP_STORED, PartitionedFileIOManager, Stamped

CACHE_KEY = "cache_key"
CACHED = "cached"
COMPUTED_IN_RUN = "computed_in_run"
RUN_SUMMARY_PREFIX = "run/"
"""Metadata shared by every partition of a run (totals over the range) starts with this."""

_STAMP_RUN_ID = "run_id"
_STAMP_METADATA = "metadata"


def stored_cache_keys(
    io_manager: PartitionedFileIOManager, asset_key: dg.AssetKey, partition_keys: Sequence[str]
) -> dict[str, str]:
    """The cache key each stored partition of `partition_keys` was built from, by key."""
    return {
        key: str(stamp[CACHE_KEY])
        for key, stamp in io_manager.stored_stamps(asset_key, partition_keys).items()
        if CACHE_KEY in stamp
    }


def _scalars(metadata: Mapping[str, Any]) -> dict[str, bool | int | float | str]:
    # What a stamp can carry: numbers and text (previews and schemas stay with the computing run).
    return {
        name: value
        for name, value in metadata.items()
        if isinstance(value, bool | int | float | str) and not name.startswith(RUN_SUMMARY_PREFIX)
    }


@dataclass
class PartitionCache:
    """Decides, partition by partition, whether a run can keep what is already stored."""

    context: dg.AssetExecutionContext
    stamps: dict[str, dict[str, Any]] = field(default_factory=dict)
    cached_keys: list[str] = field(default_factory=list)
    computed_keys: list[str] = field(default_factory=list)

    @classmethod
    def load(
        cls, context: dg.AssetExecutionContext, io_manager: PartitionedFileIOManager
    ) -> "PartitionCache":
        stamps = io_manager.stored_stamps(context.asset_key, context.partition_keys)
        return cls(context=context, stamps=stamps)

    def reuse(self, partition_key: str, cache_key: str) -> Any | None:
        """`KEEP_STORED` if the stored partition was built from the same inputs, else None.

        On a hit the partition's stamped metadata is carried over, marked `cached`.
        """
        stamp = self.stamps.get(partition_key)
        if stamp is None or stamp.get(CACHE_KEY) != cache_key:
            return None
        self.context.add_asset_metadata(
            {
                **stamp.get(_STAMP_METADATA, {}),
                CACHE_KEY: cache_key,
                CACHED: True,
                COMPUTED_IN_RUN: str(stamp.get(_STAMP_RUN_ID, "")),
            },
            partition_key=partition_key,
        )
        self.cached_keys.append(partition_key)
        return KEEP_STORED

    def record_computed(
        self, partition_key: str, cache_key: str, frame: pl.DataFrame, metadata: dict[str, Any]
    ) -> Stamped:
        """Attach a freshly computed partition's metadata and cache key to its event; returns
        the output that stores `frame` with its stamp."""
        self.context.add_asset_metadata(
            {**metadata, CACHE_KEY: cache_key, CACHED: False}, partition_key=partition_key
        )
        self.computed_keys.append(partition_key)
        stamp = {
            CACHE_KEY: cache_key,
            _STAMP_RUN_ID: self.context.run.run_id,
            _STAMP_METADATA: _scalars(metadata),
        }
        return Stamped(frame, stamp)

    def summary(self) -> dict[str, Any]:
        """Run-level metadata: how many partitions the run recomputed and how many it kept."""
        return {
            f"{RUN_SUMMARY_PREFIX}partitions": len(self.cached_keys) + len(self.computed_keys),
            f"{RUN_SUMMARY_PREFIX}recomputed": len(self.computed_keys),
            f"{RUN_SUMMARY_PREFIX}cached": len(self.cached_keys),
        }

    def log_summary(self) -> None:
        total = len(self.cached_keys) + len(self.computed_keys)
        name = self.context.asset_key.to_user_string()
        if self.cached_keys and not self.computed_keys:
            self.context.log.info(
                f"{name}: all {total} partition(s) unchanged (same source and code version): "
                "nothing recomputed, stored files kept"
            )
        else:
            self.context.log.info(
                f"{name}: recomputed {len(self.computed_keys)} of {total} partition(s), "
                f"kept {len(self.cached_keys)} unchanged"
            )
