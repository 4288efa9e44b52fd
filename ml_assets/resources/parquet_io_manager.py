"""Stores asset outputs as files under the data directory, one file per partition.

Outputs never travel between steps in memory, so the multiprocess, Celery and Kubernetes executors
all work: each step reads its inputs from the files its upstream steps wrote.

One module though past 250 lines: how outputs are written (paths, partition mappings, stamps,
`KEEP_STORED`) and how inputs are read back are one file layout, kept side by side.
"""

import json
import os
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from ml_assets.failures import failing_without_retries
from ml_assets.lib.storage import atomic_write_json, atomic_write_parquet, read_stamp


class PartitionedFileIOManager(dg.ConfigurableIOManager):
    """Polars frames as parquet and dicts as JSON, at `{base_dir}/{asset}/{partition}.{ext}`.

    A run over a partition range (a single-run backfill) returns a mapping from partition key to
    that partition's value; each is written to its own file. A partition whose value is
    `KEEP_STORED` keeps the file it already has (its inputs did not change, see
    `ml_assets.assets.partition_cache`); a `Stamped` table is written with its stamp (what it was
    built from) in the parquet file's footer, read back by `stored_stamps`. Downstream assets
    read one partition as a value, several as a lazily scanned frame (`pl.LazyFrame`) or as a
    mapping by partition key (`dict[str, pl.DataFrame]`, or `dict[str, pl.LazyFrame]` to read
    only the partitions it collects).

    Every step stores through it, so it also logs the settings in force when a run starts (once
    per step process): which source, taxi type, data directory, Dagster home, MLflow tracking URI
    and executor won, whether they came from the environment or from `.env`.
    """

    base_dir: str = Field(description="Folder under which every asset's files are written.")
    settings_in_force: dict[str, str] = Field(
        default={},
        description=(
            "The settings that decide what a run reads and where it writes, by environment "
            "variable (see `Settings.in_force`); logged at the start of every run."
        ),
    )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if not self.settings_in_force or context.log is None:
            return
        # The instance the run is recorded in is the Dagster home that won.
        home = context.instance.root_directory if context.instance else os.getenv("DAGSTER_HOME")
        shown = {**self.settings_in_force, "DAGSTER_HOME": home or "(unset)"}
        context.log.info(
            "ml_assets settings in force: " + ", ".join(f"{k}={v}" for k, v in shown.items())
        )

    def _asset_dir(self, asset_key: dg.AssetKey) -> Path:
        return Path(self.base_dir).joinpath(*asset_key.path)

    def _path(self, asset_key: dg.AssetKey, partition_key: str | None, value: Any) -> Path:
        suffix = ".json" if isinstance(value, Mapping) else ".parquet"
        if partition_key is None:
            return Path(self.base_dir).joinpath(*asset_key.path).with_suffix(suffix)
        return self._asset_dir(asset_key) / f"{partition_key}{suffix}"

    def has_stored(self, asset_key: dg.AssetKey, partition_key: str | None) -> bool:
        """Whether a file for the asset's partition (or the unpartitioned asset) exists."""
        return any(
            self._path(asset_key, partition_key, {} if suffix == ".json" else None).exists()
            for suffix in (".parquet", ".json")
        )

    def stored_path(self, asset_key: dg.AssetKey, partition_key: str | None) -> Path | None:
        """The file holding the asset's partition, or None if it has not been materialized.

        For readers outside a step's inputs, e.g. an asset check comparing a day with a window
        of earlier days (Dagster does not apply partition mappings to asset check inputs).
        """
        return (
            self._find(asset_key, partition_key)
            if self.has_stored(asset_key, partition_key)
            else None
        )

    def stored_stamps(
        self, asset_key: dg.AssetKey, partition_keys: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """The stamp of each of `partition_keys` whose stored file has one, by key.

        Reads only the files' footers: cheap enough to ask for every day of a range. A stored file
        that cannot be read (damaged outside Dagster) has no stamp: it is logged, and whoever asks
        builds that day again, which replaces the file.
        """
        stamps = {}
        for key in partition_keys:
            path = self._path(asset_key, key, None)
            if not path.exists():
                continue
            try:
                stamp = read_stamp(path)
            except ValueError as error:
                dg.get_dagster_logger().warning(
                    f"partition {key} of {asset_key.to_user_string()}: {error}; rebuilding it"
                )
                continue
            if stamp is not None:
                stamps[key] = stamp
        return stamps

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        # A folder the step may not write, or a file in the way, fails the same way on every
        # retry: fail at once, naming the asset and the path.
        with failing_without_retries(context.asset_key.to_user_string()):
            self._handle_output(context, obj)

    def _handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        asset_key = context.asset_key
        if not context.has_asset_partitions:
            self._write(self._path(asset_key, None, obj), obj)
            return
        keys = context.asset_partition_keys
        if len(keys) == 1 and not _is_partition_mapping(obj, keys):
            self._store(asset_key, keys[0], obj)
            return
        if not _is_partition_mapping(obj, keys):
            raise TypeError(
                f"{asset_key.to_user_string()}: a run over partitions {keys[0]}..{keys[-1]} must "
                "return a mapping from each partition key to its value"
            )
        missing = sorted(set(keys) - set(obj))
        if missing:
            raise ValueError(
                f"{asset_key.to_user_string()}: no output for partition(s) {', '.join(missing)}"
            )
        for key in keys:
            self._store(asset_key, key, obj[key])

    def _store(self, asset_key: dg.AssetKey, partition_key: str, value: Any) -> None:
        if value is not KEEP_STORED:
            self._write(self._path(asset_key, partition_key, value), value)
        elif not self.has_stored(asset_key, partition_key):
            raise FileNotFoundError(
                f"partition {partition_key} of {asset_key.to_user_string()}: the asset asked to "
                f"keep its stored file, but there is none under {self._asset_dir(asset_key)}"
            )

    def _write(self, path: Path, value: Any) -> None:
        if isinstance(value, Stamped):
            atomic_write_parquet(value.frame, path, stamp=value.stamp)
        elif isinstance(value, pl.DataFrame):
            atomic_write_parquet(value, path)
        elif isinstance(value, Mapping):
            atomic_write_json(value, path)
        else:
            raise TypeError(
                f"{path}: cannot store a {type(value).__name__}; return a polars DataFrame or a dict"
            )

    def load_input(self, context: dg.InputContext) -> Any:
        asset_key = context.asset_key
        wants = context.dagster_type.typing_type
        if not context.has_asset_partitions:
            return self._read(self._find(asset_key, None), wants)
        keys = context.asset_partition_keys
        paths = {key: self._find(asset_key, key) for key in keys}
        if wants is pl.LazyFrame:
            return pl.scan_parquet([str(path) for path in paths.values()])
        if len(keys) == 1 and not _wants_mapping(wants):
            return self._read(paths[keys[0]], wants)
        value_type = typing.get_args(wants)[1] if _wants_mapping(wants) else None
        if value_type is pl.DataFrame and all(path.suffix == ".parquet" for path in paths.values()):
            return self._read_frames(paths)
        return {key: self._read(path, value_type) for key, path in paths.items()}

    def load_frames(
        self, asset_key: dg.AssetKey, partition_keys: Sequence[str]
    ) -> dict[str, pl.DataFrame]:
        """The stored tables of `partition_keys`, by key; names the first one not materialized.

        For readers outside a step's inputs, such as the checks of a range run, which read the
        days of their run themselves.
        """
        return self._read_frames({key: self._find(asset_key, key) for key in partition_keys})

    def load_records(
        self, asset_key: dg.AssetKey, partition_keys: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """The stored JSON records of `partition_keys`, by key; names the first one not
        materialized. `load_frames` for assets whose values are records."""
        return {key: self._read(self._find(asset_key, key), dict) for key in partition_keys}

    @staticmethod
    def _read_frames(paths: Mapping[str, Path]) -> dict[str, pl.DataFrame]:
        # One polars call for all the days: the files are read in parallel, several times faster
        # than one read per day for a range of small files.
        frames = pl.collect_all([pl.scan_parquet(path) for path in paths.values()])
        return dict(zip(paths, frames, strict=True))

    def _find(self, asset_key: dg.AssetKey, partition_key: str | None) -> Path:
        for suffix in (".parquet", ".json"):
            path = self._path(asset_key, partition_key, {} if suffix == ".json" else None)
            if path.exists():
                return path
        where = f"partition {partition_key} of " if partition_key else ""
        raise FileNotFoundError(
            f"{where}{asset_key.to_user_string()} has not been materialized: no file under "
            f"{self._asset_dir(asset_key)}; materialize it first"
        )

    @staticmethod
    def _read(path: Path, wants: Any) -> Any:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        if wants is pl.LazyFrame:
            return pl.scan_parquet(path)
        return pl.read_parquet(path)


@dataclass(frozen=True)
class Stamped:
    """A table to store with a stamp (JSON-able) in its file's footer: what it was built from."""

    frame: pl.DataFrame
    stamp: Mapping[str, Any]


class _KeepStored:
    """The marker type of `KEEP_STORED`."""

    def __repr__(self) -> str:
        return "KEEP_STORED"


KEEP_STORED = _KeepStored()
"""An output value meaning "this partition is unchanged: keep the file already stored"."""


def _is_partition_mapping(obj: Any, keys: list[str]) -> bool:
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and set(obj) <= set(keys)
        and all(
            isinstance(value, pl.DataFrame | Mapping | Stamped) or value is KEEP_STORED
            for value in obj.values()
        )
    )


def _wants_mapping(wants: Any) -> bool:
    """`dict[str, pl.DataFrame | pl.LazyFrame | dict[...]]` asks for values by partition key."""
    if typing.get_origin(wants) is not dict:
        return False
    value_type = typing.get_args(wants)[1]
    return value_type in (pl.DataFrame, pl.LazyFrame, dict) or typing.get_origin(value_type) is dict
