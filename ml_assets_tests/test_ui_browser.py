"""End to end in a real browser: `dagster dev` on loopback, driven through Debian's chromium,
after `ml-assets-demo` ran the loop over a historical run of four days (ML_ASSETS_END_DATE).

Screenshots go to `test-artifacts/` in the repository root. With `ML_ASSETS_UPDATE_SCREENSHOTS=1`
the README's screenshots in `docs/images/` are refreshed from the same run.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from ml_assets.definitions import build_definitions
from ml_assets.settings import Settings
from ml_assets_tests.conftest import REPO_ROOT, local_instance, new_local_home
from ml_assets_tests.dagster_dev import running_dagster_dev

ARTIFACTS = REPO_ROOT / "test-artifacts"
README_IMAGES = REPO_ROOT / "docs" / "images"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
GROUPS = ("ingestion", "features", "model", "predictions")
# Every challenger of these days passes the promotion gate: a day whose challenger loses it has
# no model_promotion (the blocking checks skip it) and shows so in the graph.
DEMO_DAYS = ("2021-01-01", "2021-01-03")
CLICKED_DAY = "2021-01-02"
EVALUATED_DAY = DEMO_DAYS[1]

pytestmark = pytest.mark.slow


def _require_chromium() -> None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "the playwright package is not installed (pip install -e '.[dev]')"
    else:
        if CHROMIUM.exists():
            return
        reason = f"{CHROMIUM} is missing (apt-get install chromium; scripts/setup does it)"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser test: {reason}")
    pytest.skip(reason)


def _run_the_demo(cwd: Path, env: dict[str, str], log: Path) -> None:
    """`ml-assets-demo` over the demo days, as the README's quickstart runs it."""
    first, last = DEMO_DAYS
    with log.open("w") as output:
        finished = subprocess.run(
            [sys.executable, "-m", "ml_assets.demo", "--start", first, "--end", last],
            cwd=cwd,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=400,
        )
    assert finished.returncode == 0, log.read_text()[-3000:]


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`dagster dev` on a free loopback port, showing what `ml-assets-demo` made of a historical
    run (ML_ASSETS_END_DATE: the demo's last day); yields its URL and DAGSTER_HOME."""
    _require_chromium()
    base = tmp_path_factory.mktemp("dagster_ui")
    home = new_local_home(base)
    settings_env = {
        "ML_ASSETS_SOURCE": "sample",
        "ML_ASSETS_DATA_DIR": str(base / "data"),
        "ML_ASSETS_START_DATE": DEMO_DAYS[0],
        "ML_ASSETS_END_DATE": DEMO_DAYS[1],
    }
    env = {**os.environ, **settings_env, "DAGSTER_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    # The instance's storage is created once, here: the demo and dagster dev creating it at the
    # same moment race on its schema migrations (a deployment creates it once, too).
    with local_instance(home):
        pass

    log = base / "dagster_dev.log"
    target = ("-w", str(REPO_ROOT / "workspace.yaml"))
    try:
        # The demo runs while dagster dev starts: its daemon's first ticks are slow on a busy
        # machine, and the run launched from the UI waits in the queue until it dequeues it.
        with running_dagster_dev(
            target,
            cwd=base,
            env=env,
            log=log,
            timeout=180,
            while_starting=lambda: _run_the_demo(base, env, base / "demo.log"),
        ) as url:
            yield url, home
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(log, ARTIFACTS / "dagster_dev.log")
        if (base / "demo.log").exists():
            shutil.copy(base / "demo.log", ARTIFACTS / "demo.log")


def _missing_partitions(home: Path) -> dict[str, list[str]]:
    """The days (or `(unpartitioned)`) of each asset not materialized, read from the instance."""
    definitions = build_definitions(
        Settings.from_env(
            {"ML_ASSETS_START_DATE": DEMO_DAYS[0], "ML_ASSETS_END_DATE": DEMO_DAYS[1]}
        )
    )
    graph = definitions.resolve_asset_graph()
    missing = {}
    with local_instance(home) as instance:
        for key in graph.materializable_asset_keys:
            partitions = graph.get(key).partitions_def
            expected = partitions.get_partition_keys() if partitions else ["(unpartitioned)"]
            if partitions is None:
                done = ["(unpartitioned)"] if instance.get_latest_materialization_event(key) else []
            else:
                done = list(instance.get_materialized_partitions(key))
            missing[key.to_user_string()] = sorted(set(expected) - set(done))
    return missing


@pytest.fixture(scope="module")
def browser_page(dagster_ui: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium_profile")),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1600, "height": 1000},
        )
        # Nothing but the local webserver: fail loudly if the UI reached for the internet.
        outside: list[str] = []

        def only_loopback(route) -> None:
            if route.request.url.startswith(dagster_ui[0]) or route.request.url.startswith(
                ("data:", "blob:")
            ):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        context.route("**/*", only_loopback)
        page = context.new_page()
        page.set_default_timeout(90_000)
        try:
            yield page
        finally:
            context.close()
        assert not outside, f"the UI tried to reach beyond loopback: {outside[:5]}"


def _screenshot(page, name: str, readme: bool = False) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    if readme and os.environ.get("ML_ASSETS_UPDATE_SCREENSHOTS") == "1":
        README_IMAGES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(README_IMAGES / f"{name}.png"))


def _expected_edges() -> set[tuple[str, str]]:
    from ml_assets.definitions import build_definitions
    from ml_assets.settings import Settings

    graph = build_definitions(
        Settings.from_env({"ML_ASSETS_SOURCE": "sample"})
    ).resolve_asset_graph()
    return {
        (parent.to_user_string(), key.to_user_string())
        for key in graph.get_all_asset_keys()
        for parent in graph.get(key).parent_keys
    }


_DRAWN_GRAPH = """() => {
  const nodes = [];
  for (const box of document.querySelectorAll('foreignObject')) {
    const label = box.querySelector('[class*="assetName"]');
    if (label) nodes.push({name: label.textContent.trim(), x: +box.getAttribute('x'),
                           y: +box.getAttribute('y'), w: +box.getAttribute('width'),
                           h: +box.getAttribute('height')});
  }
  const edges = [];
  for (const path of document.querySelectorAll('path[stroke^="var(--color-lineage-edge"]')) {
    const numbers = path.getAttribute('d').match(/-?[0-9.]+/g).map(Number);
    edges.push([numbers[0], numbers[1], numbers[numbers.length - 2], numbers[numbers.length - 1]]);
  }
  return {nodes, edges};
}"""


def _shown_as(label: str, names: set[str]) -> str:
    """The asset a node label stands for; long names are shown middle-truncated (`trip_…_x`)."""
    head, _, tail = label.partition("…")
    matches = {
        name
        for name in names
        if name == label or ("…" in label and name.startswith(head) and name.endswith(tail))
    }
    assert len(matches) == 1, f"node label {label!r} matches {sorted(matches) or 'no asset'}"
    return matches.pop()


def _node_at(nodes: list[dict], x: float, y: float) -> str | None:
    for node in nodes:
        if (
            node["x"] - 15 <= x <= node["x"] + node["w"] + 15
            and node["y"] <= y <= node["y"] + node["h"]
        ):
            return node["name"]
    return None


def test_asset_graph_shows_every_asset_and_edge_all_materialized_after_the_demo(
    browser_page, dagster_ui
) -> None:
    url, home = dagster_ui
    expected_edges = _expected_edges()
    expected_assets = {name for edge in expected_edges for name in edge}
    expanded = ",".join(f"global@global:{group}" for group in GROUPS)
    page = browser_page

    page.goto(f"{url}/asset-groups?expanded={expanded}")
    page.wait_for_function(
        "n => document.querySelectorAll('foreignObject [class*=\"assetName\"]').length >= n",
        arg=len(expected_assets),
    )
    page.wait_for_timeout(1500)  # let the layout settle before reading coordinates

    # The instance template turns the first-visit popup off: nothing covers the graph.
    assert page.get_by_role("dialog").count() == 0
    drawn = page.evaluate(_DRAWN_GRAPH)
    for node in drawn["nodes"]:
        node["name"] = _shown_as(node["name"], expected_assets)
    shown_assets = {node["name"] for node in drawn["nodes"]}
    shown_edges = {
        (_node_at(drawn["nodes"], x0, y0), _node_at(drawn["nodes"], x1, y1))
        for x0, y0, x1, y1 in drawn["edges"]
    }
    _screenshot(page, "asset_graph", readme=True)
    assert expected_assets <= shown_assets
    assert shown_edges == expected_edges
    # Green in the UI: every day of every asset materialized, the first day's evaluation, gate,
    # decision and predictions included (records saying there was nothing to score).
    assert _missing_partitions(home) == {name: [] for name in expected_assets - {"champion_model"}}


def _materializations(home: Path, day: str) -> list[str]:
    """The runs that materialized `raw_trips` of `day`, newest first, read from the instance."""
    with local_instance(home) as instance:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("raw_trips"), asset_partitions=[day]),
            limit=100,
        ).records
        return [record.run_id for record in records]


def test_materialize_a_partition_by_clicking(browser_page, dagster_ui) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    url, home = dagster_ui
    page = browser_page

    # The demo materialized the day; the run launched here records it again (from its cache).
    demo_materializations = _materializations(home, CLICKED_DAY)
    page.goto(f"{url}/assets/raw_trips")
    page.get_by_role("button").filter(has_text=re.compile(r"^Materialize")).first.click()
    dialog = page.get_by_role("dialog")
    # Every day is materialized already (the demo ran them): pick one by hand.
    dialog.get_by_role("button").filter(has_text=re.compile(r"^Custom$")).click()
    # The partition box, not the first input: on a busy machine the dialog can still hold a
    # hidden checkbox of another section when the box is asked for.
    selection = dialog.get_by_role("textbox").first
    selection.fill(CLICKED_DAY)
    selection.press("Enter")
    dialog.get_by_text("1 partition", exact=False).first.wait_for()
    _screenshot(page, "materialize_dialog")
    dialog.get_by_role("button").filter(has_text=re.compile(r"^Launch")).click()

    # An open asset page keeps polling the webserver, whose SQLite reads can starve the daemon's
    # dequeue of the run on a busy machine: leave the UI while the run goes through the queue,
    # and look at the instance only every few seconds.
    page.wait_for_timeout(2000)
    page.goto("about:blank")
    deadline = time.monotonic() + 300
    while (runs := _materializations(home, CLICKED_DAY)) == demo_materializations:
        assert time.monotonic() < deadline, "the run launched from the UI did not succeed"
        time.sleep(5)
    clicked_run = runs[0][:8]  # the UI names runs by the first 8 characters of their id

    # The UI has to show the new materialization itself: reload until shown.
    for _ in range(30):
        page.goto(f"{url}/assets/raw_trips?view=events&partition={CLICKED_DAY}")
        try:
            page.get_by_text(clicked_run).first.wait_for(timeout=10_000)
            break
        except PlaywrightTimeout:
            continue
    page.get_by_text(clicked_run).first.wait_for()
    page.get_by_text("taxi_type").first.wait_for()
    # The day's source and code are unchanged since the demo: the file is kept, and the new
    # materialization says so and names the run that computed it.
    page.get_by_text("computed_in_run").first.wait_for()
    _screenshot(page, "raw_trips_partition")
    body = page.inner_text("body")
    assert CLICKED_DAY in body
    assert "synthetic sample (green" in body


def test_model_metadata_and_evaluation_plot(browser_page, dagster_ui) -> None:
    url, _ = dagster_ui
    page = browser_page

    page.goto(f"{url}/assets/duration_model")
    for text in ("ml-platform", "Scikit Learn", "ML Flow", "stage: train", "retrain_job"):
        page.get_by_text(text, exact=True).first.wait_for()
    for key in ("val_rmse", "mlflow_run", "model_version", "feature_importance_chart"):
        page.get_by_text(key, exact=True).first.wait_for()
    page.get_by_text("trip_distance").first.wait_for()
    _screenshot(page, "model_metadata", readme=True)

    page.goto(f"{url}/assets/model_evaluation")
    # The Plots view charts every numeric metadata entry; "Events" plots one point per
    # materialization, so RMSE and the baseline's RMSE are drawn day after day.
    page.get_by_role("button").filter(has_text=re.compile(r"^Plots$")).first.click()
    page.get_by_role("button").filter(has_text=re.compile(r"^Events$")).first.click()
    for key in ("rmse", "baseline_rmse"):
        page.get_by_text(key, exact=True).first.wait_for()
    page.locator("canvas").first.wait_for()
    page.get_by_text("Metadata", exact=True).first.scroll_into_view_if_needed()
    _screenshot(page, "evaluation_plots", readme=True)


_IMAGES = """dialog => [...dialog.querySelectorAll('img')].map(image => ({
  alt: image.alt, png: image.src.startsWith('data:image/png;base64,'),
  width: image.naturalWidth, height: image.naturalHeight}))"""


def test_evaluation_page_shows_the_report_next_to_the_numbers(browser_page, dagster_ui) -> None:
    from playwright.sync_api import expect

    from ml_assets.lib.evaluation_reports import DPI, FIGURE_INCHES, REPORTS

    url, _ = dagster_ui
    page = browser_page

    page.goto(f"{url}/assets/model_evaluation")
    page.get_by_text(EVALUATED_DAY, exact=True).first.wait_for()
    rmse_row = page.locator("tr").filter(has=page.get_by_text("rmse", exact=True)).first
    rmse = float(rmse_row.locator("td").last.inner_text())
    # Over 1,000 characters, the report sits behind [Show Markdown] in the metadata table; the
    # dialog renders its markdown, inline data: images included, fetching nothing.
    report_row = page.locator("tr").filter(has=page.get_by_text("evaluation_report", exact=True))
    report_row.get_by_text("[Show Markdown]").click()
    dialog = page.get_by_role("dialog")
    first_figure = dialog.locator("img").first
    expect(first_figure).to_be_visible()
    page.wait_for_function(
        "() => [...document.querySelectorAll('[role=dialog] img')].every(i => i.complete)"
    )
    expected_size = (int(FIGURE_INCHES[0] * DPI), int(FIGURE_INCHES[1] * DPI))
    assert dialog.evaluate(_IMAGES) == [
        {"alt": name, "png": True, "width": expected_size[0], "height": expected_size[1]}
        for name in REPORTS
    ]
    # The numbers the figures explain head the report: the challenger's RMSE, the baseline's.
    text = dialog.inner_text()
    assert f"{rmse:.2f}" in text
    assert "zone-pair baseline" in text
    assert "predicted vs actual" in text
    _screenshot(page, "evaluation_report", readme=True)
