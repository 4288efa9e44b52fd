"""The TLC publication sensor: ingest a month as soon as TLC publishes (or replaces) its file."""

import calendar
import inspect
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from ml_assets.jobs import ingestion_job
from ml_assets.lib.month_cache import month_file_name
from ml_assets.lib.publication import (
    dump_seen,
    forget_outdated_cached_month,
    month_id,
    months_between,
    parse_seen,
    scan_publications,
)
from ml_assets.partitions import DailyPartitioning
from ml_assets.resources.trip_source import TripSource

PUBLICATION_CHECK_INTERVAL_SECONDS = 6 * 60 * 60
FILE_VERSION_TAG = "ml_assets/tlc_file_version"


def month_partition_range(
    month: date, now: datetime, first_day: date, last_day: date | None = None
) -> tuple[str, str] | None:
    """The first and last daily partition of `month` that exist at `now`, the partitions starting
    on `first_day` and ending on `last_day` if set (None if none do)."""
    first = max(month, first_day)
    month_end = month.replace(day=calendar.monthrange(month.year, month.month)[1])
    # Daily partitions end with the last complete day, or the last day of a historical run.
    last = min(month_end, now.date() - timedelta(days=1), last_day or date.max)
    if last < first:
        return None
    return first.isoformat(), last.isoformat()


def publication_tick(
    context: dg.SensorEvaluationContext,
    trip_source: TripSource,
    first_day: date,
    last_day: date | None = None,
) -> dg.SensorResult | dg.SkipReason:
    """Watches TLC for month files that are new or changed, and ingests each such month in one run.

    Every few hours it sends a HEAD request for each month from the first partition's month to the
    current month and compares the file's version (its ETag, or its Last-Modified and size when
    the host sends no ETag) with what it saw before (kept in the sensor's cursor). A new or changed
    file launches `ingestion_job` over that month's days as a single run; a local copy of another
    version is dropped first so the run downloads the published one. The run key names the file version, so the same file never launches
    twice. A source that is down gives a skipped tick with the reason, and the next tick retries.
    """
    if trip_source.synthetic:
        return dg.SkipReason(
            "ML_ASSETS_SOURCE=sample: trips are generated locally, TLC publications are not "
            "watched. Set ML_ASSETS_SOURCE=tlc to ingest months as TLC publishes them."
        )
    now = datetime.now(UTC)
    months = months_between(first_day, min(now.date(), last_day or date.max))
    seen = parse_seen(context.cursor)
    client = trip_source.client()
    scan = scan_publications(client, trip_source.taxi_type, months, seen)

    run_requests = []
    for found in scan.new_or_changed:
        partition_range = month_partition_range(found.month, now, first_day, last_day)
        if partition_range is None:
            continue
        # Also for a month this sensor has not seen before: a copy cached by an earlier run may
        # be of another version than the one published now.
        if forget_outdated_cached_month(client, trip_source.taxi_type, found.month, found.remote):
            context.log.info(
                f"{found.remote.url} changed: dropped the outdated local copy, the run downloads "
                f"version {found.remote.version}"
            )
        name = month_file_name(trip_source.taxi_type, found.month)
        context.log.info(
            f"{name} is {'changed' if found.changed else 'new'} (version {found.remote.version}): "
            f"ingesting {partition_range[0]}..{partition_range[1]}"
        )
        run_requests.append(
            dg.RunRequest(
                run_key=f"{name}@{found.remote.version}",
                tags={
                    "dagster/asset_partition_range_start": partition_range[0],
                    "dagster/asset_partition_range_end": partition_range[1],
                    FILE_VERSION_TAG: found.remote.version,
                },
            )
        )
    cursor = dump_seen(scan.seen_after(seen, trip_source.taxi_type))
    if run_requests:
        if scan.error:
            context.log.warning(f"stopped checking early: {scan.error}")
        return dg.SensorResult(run_requests=run_requests, cursor=cursor)
    if scan.error:
        reason = f"could not check TLC publications ({scan.error}); the next tick tries again"
    else:
        reason = (
            f"no new or changed {trip_source.taxi_type} month file: {len(scan.unchanged)} "
            f"unchanged, {len(scan.unpublished)} not published yet "
            f"(watching {month_id(trip_source.taxi_type, months[0])}..{months[-1]:%Y-%m})"
        )
    return dg.SensorResult(skip_reason=reason, cursor=cursor)


def build_publication_sensor(days: DailyPartitioning) -> dg.SensorDefinition:
    """`tlc_publication_sensor`, watching the months from the first of `days`' partitions."""

    @dg.sensor(
        job=ingestion_job,
        minimum_interval_seconds=PUBLICATION_CHECK_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=inspect.cleandoc(publication_tick.__doc__ or ""),
    )
    def tlc_publication_sensor(
        context: dg.SensorEvaluationContext, trip_source: TripSource
    ) -> dg.SensorResult | dg.SkipReason:
        return publication_tick(context, trip_source, days.first_day, days.last_day)

    return tlc_publication_sensor
