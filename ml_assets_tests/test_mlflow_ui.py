"""`ml-assets-mlflow-ui`: the MLflow links of the asset pages open on a laptop.

The fast tests check the `mlflow ui` command line built from the settings. The slow test trains a
model on the local store (no tracking server), starts the command as a user would, from a folder
whose `.env` holds the settings, and follows the `mlflow_run` and `model_version_link` URLs of
the asset's materialization: the UI page answers, the REST API behind it knows that run and that
version, the model's files are readable through it, and (with Debian's chromium) the run page
shows the run.
"""

import json
import shlex
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import dagster as dg
import pytest

from ml_assets.mlflow_ui import NothingToStart, main, mlflow_ui_command
from ml_assets.resources import build_resources
from ml_assets.settings import Settings
from ml_assets_tests.graph import WITHOUT_PREDICTIONS
from ml_assets_tests.processes import free_port
from ml_assets_tests.production_services import (
    child_environment,
    http_ok,
    start_service,
    stop_service,
    wait_for,
)

DAY = "2021-01-01"
CHROMIUM = Path("/usr/bin/chromium")


def _settings(tmp_path: Path, **environ: str) -> Settings:
    return Settings.from_env(
        {"ML_ASSETS_SOURCE": "sample", "ML_ASSETS_DATA_DIR": str(tmp_path / "data"), **environ}
    )


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_command_serves_the_local_store_on_the_port_of_the_links(tmp_path: Path) -> None:
    settings = _settings(tmp_path, ML_ASSETS_MLFLOW_UI_URL="http://127.0.0.1:5123")

    command = mlflow_ui_command(settings)

    assert command[:4] == [sys.executable, "-m", "mlflow", "ui"]
    data = (tmp_path / "data").resolve()
    assert _option(command, "--backend-store-uri") == f"sqlite:///{data}/mlflow.db"
    assert _option(command, "--default-artifact-root") == str(data / "mlartifacts")
    assert _option(command, "--artifacts-destination") == str(data / "mlartifacts")
    assert _option(command, "--host") == "127.0.0.1"
    assert _option(command, "--port") == "5123"
    assert "--static-prefix" not in command
    # The links the resource builds start with exactly what the UI serves.
    registry = build_resources(settings)["model_registry"]
    assert registry.run_url("1", "abc").startswith("http://127.0.0.1:5123/#/")  # type: ignore[attr-defined]


def test_command_serves_a_path_prefix_and_another_local_store(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        ML_ASSETS_MLFLOW_UI_URL="http://localhost:8080/mlflow/",
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/other.db",
    )

    command = mlflow_ui_command(settings, host="0.0.0.0")

    assert _option(command, "--backend-store-uri") == f"sqlite:///{tmp_path}/other.db"
    # A store the user chose keeps the artifact locations its experiments record.
    assert "--default-artifact-root" not in command
    assert (_option(command, "--host"), _option(command, "--port")) == ("0.0.0.0", "8080")
    assert _option(command, "--static-prefix") == "/mlflow"


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"MLFLOW_TRACKING_URI": "http://user:secret@mlflow.internal:5000"}, "MLFLOW_TRACKING_URI"),
        ({"ML_ASSETS_MLFLOW_UI_URL": "https://mlflow.example.com"}, "ML_ASSETS_MLFLOW_UI_URL"),
    ],
)
def test_nothing_to_start_names_the_setting(
    tmp_path: Path, environ: dict[str, str], named: str
) -> None:
    with pytest.raises(NothingToStart) as refused:
        mlflow_ui_command(_settings(tmp_path, **environ))

    assert str(refused.value).startswith(f"{named}=")
    assert "secret" not in str(refused.value)


def test_reads_the_settings_from_dotenv_under_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("ML_ASSETS_DATA_DIR", "ML_ASSETS_MLFLOW_UI_URL", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)  # also undoes what .env sets
    monkeypatch.setenv("ML_ASSETS_MLFLOW_UI_URL", "http://127.0.0.1:5999")
    (tmp_path / ".env").write_text(
        f'ML_ASSETS_DATA_DIR="${{ML_ASSETS_DATA_DIR:-{tmp_path}/from-dotenv}}"\n'
        "ML_ASSETS_MLFLOW_UI_URL=${ML_ASSETS_MLFLOW_UI_URL:-http://127.0.0.1:5001}\n"
    )
    monkeypatch.chdir(tmp_path)

    assert main(["--print-command", "--workers", "3"]) == 0

    command = shlex.split(capsys.readouterr().out)
    assert _option(command, "--backend-store-uri") == f"sqlite:///{tmp_path}/from-dotenv/mlflow.db"
    assert _option(command, "--port") == "5999"  # the environment wins over .env
    assert command[-2:] == ["--workers", "3"]  # passed on after ours: the last one wins


def test_bad_setting_is_one_line_and_exit_code_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ML_ASSETS_MLFLOW_UI_URL", "127.0.0.1:5000")

    assert main([]) == 2

    error = capsys.readouterr().err
    assert error.startswith("ml-assets-mlflow-ui: ML_ASSETS_MLFLOW_UI_URL='127.0.0.1:5000': ")
    assert error.count("\n") == 1


# --- the links, followed against the real UI ---------------------------------------------------


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200, url
        return json.loads(response.read())


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.read().decode()


@pytest.fixture
def trained(tmp_path: Path) -> tuple[Settings, dict[str, dg.MetadataValue]]:
    """A model trained and registered on the local store, as after the quickstart's demo, with
    the links pointing at a free port; yields the settings and the model's metadata."""
    port = free_port()
    settings = _settings(tmp_path, ML_ASSETS_MLFLOW_UI_URL=f"http://127.0.0.1:{port}")
    resources = build_resources(settings)
    with dg.instance_for_test() as instance:
        dg.materialize(
            WITHOUT_PREDICTIONS, selection=["taxi_zones"], resources=resources, instance=instance
        )
        result = dg.materialize(
            WITHOUT_PREDICTIONS,
            selection=["raw_trips", "trip_features", "duration_model"],
            partition_key=DAY,
            resources=resources,
            instance=instance,
        )
    metadata = result.asset_materializations_for_node("duration_model")[0].metadata
    return settings, dict(metadata)


@pytest.fixture
def mlflow_ui(tmp_path: Path, trained: tuple[Settings, dict]) -> Iterator[str]:
    """`python -m ml_assets.mlflow_ui` started from a folder whose `.env` holds the settings,
    with no ml_assets or MLflow variable in its environment; yields the UI's URL."""
    settings, _ = trained
    folder = tmp_path / "laptop"
    folder.mkdir()
    (folder / ".env").write_text(
        f'ML_ASSETS_DATA_DIR="${{ML_ASSETS_DATA_DIR:-{settings.data_dir}}}"\n'
        f"ML_ASSETS_MLFLOW_UI_URL=${{ML_ASSETS_MLFLOW_UI_URL:-{settings.mlflow_ui_url}}}\n"
    )
    log = tmp_path / "mlflow-ui.log"
    process = start_service(
        [sys.executable, "-m", "ml_assets.mlflow_ui"], child_environment(), log, folder
    )
    url = settings.mlflow_ui_url
    try:
        wait_for(
            lambda: process.poll() is not None or http_ok(f"{url}/health"),
            timeout=120,
            what=f"ml-assets-mlflow-ui to answer at {url}/health",
        )
        assert process.poll() is None, log.read_text()[-3000:]
        yield url
    finally:
        stop_service(process)
    # Nothing was written where the command was started: every file is under the data directory.
    assert sorted(path.name for path in folder.iterdir()) == [".env"]


@pytest.mark.slow
def test_links_of_the_asset_page_open_the_run_and_the_version(
    trained: tuple[Settings, dict], mlflow_ui: str
) -> None:
    settings, metadata = trained
    run_link = metadata["mlflow_run"].value
    version_link = metadata["model_version_link"].value
    run_id = metadata["mlflow_run_id"].value
    version = str(metadata["model_version"].value)

    # The links name the UI's address, and the hash routes of MLflow's UI (a single-page app):
    # the server answers the page, the app reads the route after `#`.
    page, _, run_route = run_link.partition("#")
    assert page == f"{mlflow_ui}/"
    experiment_id, run_in_link = _route(run_route, "/experiments/{}/runs/{}")
    assert run_in_link == run_id
    version_page, _, version_route = version_link.partition("#")
    assert version_page == f"{mlflow_ui}/"
    assert _route(version_route, "/models/{}/versions/{}") == [settings.model_name, version]

    status, html = _get(page)
    assert status == 200
    assert '<div id="root"' in html and "static-files/" in html, html[:500]

    # What those pages load: the run, in the experiment the link names ...
    run = _get_json(f"{mlflow_ui}/api/2.0/mlflow/runs/get?run_id={run_id}")["run"]
    assert (run["info"]["run_id"], run["info"]["experiment_id"]) == (run_id, experiment_id)
    assert run["info"]["status"] == "FINISHED"
    # ... and the registered version, made by that run.
    name = quote(settings.model_name)
    model_version = _get_json(
        f"{mlflow_ui}/api/2.0/mlflow/model-versions/get?name={name}&version={version}"
    )["model_version"]
    assert (model_version["name"], model_version["version"]) == (settings.model_name, version)
    assert model_version["run_id"] == run_id

    # The model's files live under the data directory; the UI reads them from there.
    # The version's source names the logged model holding them: `models:/<model id>`.
    model_id = model_version["source"].removeprefix("models:/")
    assert model_id.startswith("m-"), model_version["source"]
    status, mlmodel = _get(
        f"{mlflow_ui}/ajax-api/2.0/mlflow/logged-models/{model_id}/artifacts/files"
        "?artifact_file_path=MLmodel"
    )
    assert status == 200 and "flavors:" in mlmodel
    assert list((settings.data_dir / "mlartifacts").rglob("MLmodel"))

    if CHROMIUM.exists():
        _open_in_chromium(
            run_link, run_id, run["info"]["run_name"], version_link, version, mlflow_ui
        )


def _route(route: str, pattern: str) -> list[str]:
    """The values of the `{}` segments of `route`, which must match `pattern` segment by segment."""
    parts, expected = route.split("/"), pattern.split("/")
    assert len(parts) == len(expected), f"{route!r} does not match {pattern!r}"
    values = []
    for part, want in zip(parts, expected, strict=True):
        if want == "{}":
            values.append(part)
        else:
            assert part == want, f"{route!r} does not match {pattern!r}"
    return values


def _open_in_chromium(
    run_link: str, run_id: str, run_name: str, version_link: str, version: str, ui: str
) -> None:
    """Open both links in Debian's chromium: the run page shows the run's name and id, the
    version page the version and the run that made it. Screenshots go to `test-artifacts/`."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return
    from ml_assets_tests.test_ui_browser import ARTIFACTS, CHROMIUM_ARGS

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            # Nothing but the local UI (its telemetry may try to reach out; the page needs none).
            page.route(
                "**/*",
                lambda route: (
                    route.continue_()
                    if route.request.url.startswith((ui, "data:", "blob:"))
                    else route.abort()
                ),
            )
            page.set_default_timeout(90_000)

            page.goto(run_link)
            page.get_by_text(run_name).first.wait_for()
            page.get_by_text(run_id).first.wait_for()
            assert urlsplit(page.url).fragment.endswith(f"/runs/{run_id}"), page.url
            page.screenshot(path=str(ARTIFACTS / "mlflow_run_page.png"))

            page.goto(version_link)
            page.get_by_text(f"Version {version}").first.wait_for()
            page.get_by_role("link", name=run_name).first.wait_for()
            page.screenshot(path=str(ARTIFACTS / "mlflow_model_version_page.png"))
        finally:
            browser.close()
