"""Loopback stand-ins for an MLflow tracking server that is down, silent, failing, or flaky.

- `refusing_url()`: a port nothing listens on (connections are refused).
- `status_server(503)`: an HTTP server answering every request with one status.
- `FailingProxy(upstream)`: a reverse proxy to a real server that answers 503 for the paths it is
  told to fail, and forwards everything else.
- `mlflow_server(...)`: a real `mlflow server` on a sqlite backend in a temporary folder.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

from ml_assets_tests.http_fixtures import LoopbackHTTPServer
from ml_assets_tests.processes import free_port
from ml_assets_tests.production_services import (
    child_environment,
    http_ok,
    start_service,
    stop_service,
    wait_for,
)


def refusing_url() -> str:
    """A loopback URL where nothing listens: every connection is refused."""
    return f"http://127.0.0.1:{free_port()}"


@contextmanager
def _serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[LoopbackHTTPServer]:
    server = LoopbackHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def status_server(status: int) -> Iterator[str]:
    """A loopback HTTP server answering every request with `status` and a short JSON body."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            body = b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "scripted"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _answer

    with _serving(Handler) as server:
        yield f"http://127.0.0.1:{server.server_address[1]}"


class FailingProxy:
    """A reverse proxy to `upstream` that answers 503 for request paths `fails(path)` picks.

    `failed` lists the paths it failed, so a test can see that the call it meant was made.
    """

    def __init__(self, upstream: str, fails: Callable[[str], bool]) -> None:
        self.upstream = urlsplit(upstream)
        self.fails = fails
        self.failed: list[str] = []

    @contextmanager
    def running(self) -> Iterator[str]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy.fails(self.path):
                    proxy.failed.append(self.path)
                    payload = b"upstream restarting"
                    self.send_response(503)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection(
                    proxy.upstream.hostname, proxy.upstream.port, timeout=60
                )
                headers = {
                    key: value
                    for key, value in self.headers.items()
                    if key.lower() not in ("host", "connection", "transfer-encoding")
                }
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                payload = response.read()
                upstream.close()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _forward

        with _serving(Handler) as server:
            yield f"http://127.0.0.1:{server.server_address[1]}"


@contextmanager
def mlflow_server(folder: Path) -> Iterator[tuple[str, str]]:
    """A real `mlflow server` on a free loopback port with a sqlite backend under `folder`.

    Yields its URL and the sqlite URI of its backend (to read the registry with the server down).
    Without MLflow's job runner (`MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`): the tests use the
    tracking and registry API only, and the runner is one more process importing MLflow, which
    doubled the server's start on a busy 2-core machine (150-180 s against 85-95 s at load 12-20).
    """
    folder.mkdir(parents=True, exist_ok=True)
    backend = f"sqlite:///{(folder / 'mlflow.db').resolve()}"
    port = free_port()
    log = folder / "mlflow-server.log"
    server = start_service(
        [
            *("mlflow", "server", "--backend-store-uri", backend),
            *("--artifacts-destination", str(folder / "artifacts"), "--serve-artifacts"),
            *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
        ],
        child_environment(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
        log,
        folder,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: server.poll() is not None or http_ok(f"{url}/health"),
            timeout=300,
            what="the MLflow server to answer /health",
        )
        assert server.poll() is None, log.read_text()[-3000:]
        yield url, backend
    finally:
        stop_service(server)
