"""What the UI shows about every asset: description, owners, kinds, tags, schema and a preview."""

import dagster as dg
import polars as pl

from ml_assets.assets.metadata import (
    importance_markdown,
    preview_markdown,
    rmse_comparison_markdown,
    table_metadata,
)
from ml_assets.definitions import build_definitions
from ml_assets.settings import Settings
from ml_assets_tests.graph import INGESTION_AND_FEATURES


def test_every_asset_has_description_owner_kinds_and_tags(settings: Settings) -> None:
    graph = build_definitions(settings).resolve_asset_graph()
    keys = graph.get_all_asset_keys()

    assert {key.to_user_string() for key in keys} == {
        "taxi_zones",
        "raw_trips",
        "trip_features",
        "duration_model",
        "model_evaluation",
        "challenger_validation",
        "model_promotion",
        "champion_model",
        "trip_duration_predictions",
    }
    for key in keys:
        node = graph.get(key)
        name = key.to_user_string()
        assert node.description and len(node.description) > 40, name
        assert node.owners == ["team:ml-platform"], name
        assert node.kinds, name
        assert node.tags.get("domain") == "nyc_taxi", name
        assert node.tags.get("stage"), name
    assert graph.get(dg.AssetKey("duration_model")).kinds >= {"scikit-learn", "mlflow"}
    assert graph.get(dg.AssetKey("raw_trips")).kinds >= {"polars"}


def test_table_assets_report_rows_schema_and_a_preview_and_declare_their_columns(
    resources: dict[str, object], instance: dg.DagsterInstance
) -> None:
    assets = INGESTION_AND_FEATURES
    dg.materialize(assets, selection=["taxi_zones"], resources=resources, instance=instance)

    result = dg.materialize(
        assets,
        selection=["raw_trips", "trip_features"],
        partition_key="2021-01-01",
        resources=resources,
        instance=instance,
    )
    specs = {spec.key.to_user_string(): spec for asset in assets for spec in asset.specs}

    for asset in ("raw_trips", "trip_features"):
        metadata = result.asset_materializations_for_node(asset)[0].metadata
        rows = metadata["dagster/row_count"].value
        assert rows > 1000
        columns = [column.name for column in metadata["dagster/column_schema"].schema.columns]
        assert "PULocationID" in columns
        # Declared on the definition too, for the UI: the same columns as stored.
        declared = specs[asset].metadata["dagster/column_schema"]
        assert declared == metadata["dagster/column_schema"].schema
        preview = metadata["preview"].value
        assert preview.splitlines()[0].startswith("| ")
        assert "PULocationID" in preview.splitlines()[0]
        assert len([line for line in preview.splitlines() if line.startswith("| ")]) == 2 + 5
        assert preview.endswith(f"First 5 of {rows:,} rows.")


def test_preview_formats_and_escapes_cells() -> None:
    frame = pl.DataFrame({"zone": ["A|B", None], "minutes": [1.23456, float("nan")]})

    assert preview_markdown(frame) == "\n".join(
        [
            "| zone | minutes |",
            "| --- | --- |",
            "| A\\|B | 1.235 |",
            "|  |  |",
            "",
            "First 2 of 2 rows.",
        ]
    )
    assert "First 0 of 0 rows." in preview_markdown(frame.head(0))
    assert table_metadata(frame)["dagster/row_count"] == 2


def test_importances_and_rmse_are_drawn_as_bars_on_one_scale() -> None:
    importances = importance_markdown({"trip_distance": 0.8, "pickup_hour": 0.2})
    assert importances.splitlines()[2] == "| `trip_distance` | 80.0% | " + "█" * 20 + " |"
    assert importances.splitlines()[3] == "| `pickup_hour` | 20.0% | " + "█" * 5 + " |"

    comparison = rmse_comparison_markdown({"challenger v2": 4.0, "champion": None, "baseline": 8.0})
    assert "champion" not in comparison  # nothing to draw for a champion that does not exist
    assert "| challenger v2 | 4.00 | " + "█" * 10 + " |" in comparison
    assert "| baseline | 8.00 | " + "█" * 20 + " |" in comparison
