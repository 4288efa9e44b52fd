"""Skip partitions whose source and code are unchanged since they were last materialized.

Every partition of a cached asset records a `cache_key` in its materialization metadata: a
fingerprint of the asset's code version and of everything the partition was computed from (the
source file's checksum, the upstream partition's cache key). On the next run the asset computes
the key again before doing any work; when it equals the recorded one and the partition's file is
still stored, the partition is not recomputed: its output is `KEEP_STORED` (the file stays as it
is) and its new materialization carries the previous metadata with `cached: true`.

Dagster's own data versions cannot do this in a single-run backfill: a run over a partition range
records one data version and one input provenance for all its partitions, and Dagster never skips
a requested partition by itself.
"""

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from ml_assets.resources.parquet_io_manager import KEEP_STORED, PartitionedFileIOManager

# BackfillPolicy is marked beta; raw_trips and trip_features rely on its single-run policy.
warnings.filterwarnings("ignore", message=".*backfill_policy.*")

CACHE_KEY = "cache_key"
CACHED = "cached"
RUN_SUMMARY_PREFIX = "run/"
"""Metadata shared by every partition of a run (totals over the range) starts with this."""


def latest_partition_metadata(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition_keys: Sequence[str]
) -> dict[str, dict[str, dg.MetadataValue]]:
    """The metadata of the latest materialization of each of `partition_keys` that has one."""
    storage_ids = instance.event_log_storage.get_latest_storage_id_by_partition(
        asset_key, dg.DagsterEventType.ASSET_MATERIALIZATION, set(partition_keys)
    )
    if not storage_ids:
        return {}
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, storage_ids=list(storage_ids.values())),
        limit=len(storage_ids),
    ).records
    return {
        record.partition_key: dict(record.asset_materialization.metadata)
        for record in records
        if record.partition_key is not None and record.asset_materialization is not None
    }


@dataclass
class PartitionCache:
    """Decides, partition by partition, whether a run can keep what is already stored."""

    context: dg.AssetExecutionContext
    io_manager: PartitionedFileIOManager
    previous: dict[str, dict[str, dg.MetadataValue]] = field(default_factory=dict)
    cached_keys: list[str] = field(default_factory=list)
    computed_keys: list[str] = field(default_factory=list)

    @classmethod
    def load(
        cls, context: dg.AssetExecutionContext, io_manager: PartitionedFileIOManager
    ) -> "PartitionCache":
        previous = latest_partition_metadata(
            context.instance, context.asset_key, context.partition_keys
        )
        return cls(context=context, io_manager=io_manager, previous=previous)

    def reuse(self, partition_key: str, cache_key: str) -> Any | None:
        """`KEEP_STORED` if the partition was last built from the same inputs, else None.

        On a hit the partition's previous metadata is carried over, marked `cached`.
        """
        before = self.previous.get(partition_key, {})
        recorded = before.get(CACHE_KEY)
        if recorded is None or recorded.value != cache_key:
            return None
        if not self.io_manager.has_stored(self.context.asset_key, partition_key):
            self.context.log.warning(
                f"{partition_key}: unchanged inputs but its stored file is gone; recomputing"
            )
            return None
        carried = {
            name: value
            for name, value in before.items()
            if not name.startswith(RUN_SUMMARY_PREFIX) and name != CACHED
        }
        self.context.add_asset_metadata({**carried, CACHED: True}, partition_key=partition_key)
        self.cached_keys.append(partition_key)
        return KEEP_STORED

    def record_computed(self, partition_key: str, cache_key: str, metadata: dict[str, Any]) -> None:
        """Attach a freshly computed partition's own metadata and cache key to its event."""
        self.context.add_asset_metadata(
            {**metadata, CACHE_KEY: cache_key, CACHED: False}, partition_key=partition_key
        )
        self.computed_keys.append(partition_key)

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
