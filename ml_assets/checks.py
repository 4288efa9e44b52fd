"""Asset checks: data quality of trips and features, model quality gates."""

import dagster as dg

asset_checks: list[dg.AssetChecksDefinition] = []
