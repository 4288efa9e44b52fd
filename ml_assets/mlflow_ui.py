"""`ml-assets-mlflow-ui`: the MLflow UI on the local store, where the asset pages' links point.

    ml-assets-mlflow-ui                 # from the repository root, next to `dagster dev`
    python -m ml_assets.mlflow_ui       # the same, without the console script

Asset pages link to MLflow runs and model versions at ML_ASSETS_MLFLOW_UI_URL
(http://127.0.0.1:5000 by default). Without a tracking server (the laptop set-up of
`scripts/setup`), runs and models live in a local store, `sqlite:///<ML_ASSETS_DATA_DIR>/mlflow.db`
with artifacts in `<ML_ASSETS_DATA_DIR>/mlartifacts`, and nothing listens at that URL. This command
reads the same settings as `dagster dev` and `ml-assets-demo` (the environment, then `.env` in the
current folder) and runs `mlflow ui` on that store, on the port of ML_ASSETS_MLFLOW_UI_URL, so the
links open the right run and version. Stop it with Ctrl-C. Options it does not know (such as
`--workers 4`) are passed on to `mlflow ui`.

With MLFLOW_TRACKING_URI set to a tracking server (http:// or https://), that server already
serves the UI: the command says so and starts nothing.
"""

import argparse
import os
import shlex
import sys
from pathlib import Path
from urllib.parse import urlsplit

from ml_assets.demo import load_env_file
from ml_assets.lib.mlflow_server import is_server_uri
from ml_assets.lib.setting_values import redact_url
from ml_assets.settings import Settings, SettingsError

PROG = "ml-assets-mlflow-ui"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


class NothingToStart(Exception):
    """The settings point the links somewhere this command cannot (or need not) serve."""


def mlflow_ui_command(settings: Settings, host: str = "127.0.0.1") -> list[str]:
    """The `mlflow ui` command line serving `settings`' store at `settings.mlflow_ui_url`.

    The port (and a path prefix, if any) come from ML_ASSETS_MLFLOW_UI_URL, the store from
    MLFLOW_TRACKING_URI or its default under ML_ASSETS_DATA_DIR. Raises `NothingToStart`, naming
    the setting, when the tracking URI is a server (it serves its own UI) or the UI URL is https
    (`mlflow ui` serves plain http).
    """
    if is_server_uri(settings.mlflow_tracking_uri):
        raise NothingToStart(
            f"MLFLOW_TRACKING_URI={redact_url(settings.mlflow_tracking_uri)!r} is a tracking "
            "server, which serves its own UI: open it there (and set ML_ASSETS_MLFLOW_UI_URL to "
            "its address so the asset pages link to it); there is no local store to serve"
        )
    url = urlsplit(settings.mlflow_ui_url)
    if url.scheme != "http":
        raise NothingToStart(
            f"ML_ASSETS_MLFLOW_UI_URL={settings.mlflow_ui_url!r}: `mlflow ui` serves plain "
            "http; use an http:// URL such as http://127.0.0.1:5000 (or put a TLS proxy in front "
            "and start `mlflow ui` yourself)"
        )
    command = [
        *(sys.executable, "-m", "mlflow", "ui"),
        *("--backend-store-uri", settings.mlflow_tracking_uri),
    ]
    if settings.mlflow_artifact_location:
        # Runs logged without a server keep their artifacts at this absolute path (the
        # experiment's artifact location), which the UI reads directly. The same folder for
        # anything created through the UI keeps every artifact under the data directory, not in
        # `./mlartifacts` of whatever folder this was started from.
        command += [
            *("--default-artifact-root", settings.mlflow_artifact_location),
            *("--artifacts-destination", settings.mlflow_artifact_location),
        ]
    command += [*("--host", host), *("--port", str(url.port or 80))]
    prefix = url.path.rstrip("/")
    if prefix:
        # The links are `<ML_ASSETS_MLFLOW_UI_URL>/#/...`: the UI must be served under that path.
        command += ["--static-prefix", prefix]
    # One worker is plenty for one person's browser, and leaves the laptop's cores to the runs.
    command += ["--workers", "1"]
    return command


def _prepare_local_store(settings: Settings) -> None:
    """Create the data and artifact folders: SQLite cannot create a database in a missing folder,
    and the UI may start before the first run has made them."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.mlflow_artifact_location:
        Path(settings.mlflow_artifact_location).mkdir(parents=True, exist_ok=True)


def main(argv: list[str] | None = None) -> int:
    """Read the settings, then replace this process with `mlflow ui` on the local store."""
    load_env_file(Path.cwd())
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(__doc__ or "").split("\n")[0],
        epilog="Any other option is passed on to `mlflow ui` (see `mlflow ui --help`).",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="the interface to listen on (default 127.0.0.1: this machine only)",
    )
    parser.add_argument(
        "--print-command",
        action="store_true",
        help="print the `mlflow ui` command line instead of running it",
    )
    args, passed_on = parser.parse_known_args(argv)
    try:
        settings = Settings.from_env()
        command = mlflow_ui_command(settings, host=args.host) + passed_on
    except (SettingsError, NothingToStart) as error:
        # One line naming the variable says it all; a traceback would bury it.
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    if args.print_command:
        print(shlex.join(command))
        return 0
    _prepare_local_store(settings)
    host = urlsplit(settings.mlflow_ui_url).hostname
    print(
        f"{PROG}: MLflow UI on {redact_url(settings.mlflow_tracking_uri)} "
        f"(artifacts: {settings.mlflow_artifact_location or 'as each experiment records'}) "
        f"at {settings.mlflow_ui_url} (ML_ASSETS_MLFLOW_UI_URL); Ctrl-C stops it",
        file=sys.stderr,
        flush=True,
    )
    if host not in LOOPBACK_NAMES and args.host in LOOPBACK_NAMES:
        print(
            f"{PROG}: note: the links name host {host!r} but the UI listens on {args.host} only; "
            "pass --host 0.0.0.0 (and --allowed-hosts) if they must reach it from elsewhere",
            file=sys.stderr,
            flush=True,
        )
    # `mlflow ui` takes this process's place: Ctrl-C and a stop signal reach it directly, and
    # the pid a user (or a test) sees is the server's.
    os.execv(command[0], command)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
