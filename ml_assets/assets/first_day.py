"""The first day of the loop (`ML_ASSETS_START_DATE`): no model was trained before it.

Its evaluation, gate, decision and predictions are still materialized, as records that say so:
a day with nothing to do is done, not missing. The UI then shows the loop's first day complete, a
backfill or catch-up over it finishes, and the freshness check does not wait for it, while no
number is made up: nothing is scored, gated, decided or predicted on that day.
"""

from datetime import date
from typing import Any

FIRST_DAY = "first_day"
NO_MODEL_BEFORE = "the first day of the loop (ML_ASSETS_START_DATE): no model was trained before it"


def first_day_record(day: date, nothing_done: str) -> dict[str, Any]:
    """The output of a step on the first day: which day, and what it did not do and why."""
    return {"date": day.isoformat(), FIRST_DAY: True, "note": f"{NO_MODEL_BEFORE}; {nothing_done}"}


def is_first_day(record: dict[str, Any]) -> bool:
    """Whether `record` (an upstream step's output) is a first day's record."""
    return bool(record.get(FIRST_DAY))


def first_day_metadata(record: dict[str, Any]) -> dict[str, Any]:
    """The asset metadata of a first day's record."""
    return {FIRST_DAY: True, "note": record["note"]}
