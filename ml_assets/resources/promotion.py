"""The promotion policy: how much better a challenger must be, and whether a person approves."""

from typing import Literal

import dagster as dg
from pydantic import Field

APPROVAL_MODES = ("auto", "manual")
"""`ML_ASSETS_PROMOTION_APPROVAL`: promote a challenger that passes the gate at once (`auto`),
or make it a candidate a person approves or rejects with `review_candidate_job` (`manual`)."""


class PromotionPolicy(dg.ConfigurableResource):
    """How a challenger becomes champion: the gate's margin and who makes the final call."""

    margin: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description=(
            "How much lower the challenger's RMSE must be than the champion's on the same trips, "
            "as a share (0.02: at least 2 % lower; 0: lower at all). ML_ASSETS_PROMOTION_MARGIN."
        ),
    )
    approval: Literal["auto", "manual"] = Field(
        default="auto",
        description=(
            "auto: a challenger that passes the gate becomes champion; manual: it becomes a "
            "candidate that a person approves or rejects (review_candidate_job). "
            "ML_ASSETS_PROMOTION_APPROVAL."
        ),
    )
