"""A real HTTP server on 127.0.0.1 that stands in for the TLC file host in tests.

`FileServer` serves the files of a folder (GET and HEAD, with `Content-Length`, `ETag` and
`Last-Modified`), records every request it receives, and can be scripted per path to answer with
other statuses first (a 404, or 503 then success), to answer late, or to cut a response body short. It runs
`http.server.ThreadingHTTPServer` in a daemon thread on a free port; use it through the
`tlc_server` fixture of `conftest.py`:

    def test_download(tlc_server):
        tlc_server.add_file("green_tripdata_2021-01.parquet", parquet_bytes)
        tlc_server.script("/green_tripdata_2021-01.parquet", [503, 503])  # then the file
        client = TLCClient(cache_dir, base_url=tlc_server.base_url, backoff_seconds=0)
        ...
        assert tlc_server.requests_for("/green_tripdata_2021-01.parquet") == ["GET", "GET", "GET"]
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit


class LoopbackHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server for tests that stays quiet when a client hangs up mid-request.

    Clients under test give up on purpose (timeouts, retries, a test ending while a request is
    in flight); the default server prints a traceback for each of those.
    """

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]


@dataclass
class ScriptedResponse:
    """An answer given instead of the file, once, before the path is served normally.

    `truncate_to` serves the real file but stops after that many bytes while announcing the full
    `Content-Length`, as a dropped connection does. `delay_seconds` waits before answering, to
    make a client with a shorter timeout give up. `status=None` serves the file normally (after
    the delay).
    """

    status: int | None = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    truncate_to: int | None = None
    delay_seconds: float = 0.0


@dataclass
class FileServer:
    """Files of `root` over HTTP at `base_url`, with scripted failures and a request log."""

    root: Path
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[RecordedRequest] = field(default_factory=list)
    etags: dict[str, str] = field(default_factory=dict)
    """Per-path ETag overrides; by default a file's ETag is a hash of its content."""
    send_validators: bool = True
    """Send ETag and Last-Modified headers (False to imitate a host that sends neither)."""
    _scripts: dict[str, deque[ScriptedResponse]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def add_file(self, name: str, content: bytes | Path) -> Path:
        """Publish `content` (bytes, or a file to copy) at `/{name}`."""
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copyfile(content, target)
        else:
            target.write_bytes(content)
        return target

    def remove_file(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)

    def script(self, path: str, responses: Iterable[int | ScriptedResponse]) -> None:
        """Answer the next requests for `path` with `responses` (statuses or full answers), in order.

        Once the script is used up the path is served normally again (the file, or 404).
        """
        queue = self._scripts.setdefault("/" + path.lstrip("/"), deque())
        for response in responses:
            queue.append(
                response if isinstance(response, ScriptedResponse) else ScriptedResponse(response)
            )

    def requests_for(self, path: str) -> list[str]:
        """The methods of the requests received for `path`, in order."""
        wanted = "/" + path.lstrip("/")
        with self._lock:
            return [request.method for request in self.requests if request.path == wanted]

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def _record(self, request: RecordedRequest) -> ScriptedResponse | None:
        with self._lock:
            self.requests.append(request)
            queue = self._scripts.get(request.path)
            return queue.popleft() if queue else None

    def _etag(self, path: str, file: Path) -> str:
        return self.etags.get(path) or '"' + hashlib.md5(file.read_bytes()).hexdigest() + '"'

    @contextmanager
    def running(self) -> Iterator[FileServer]:
        """Serve until the block ends, then shut the server and its thread down."""
        httpd = LoopbackHTTPServer((self.host, self.port), _handler_for(self))
        self.port = httpd.server_address[1]
        thread = threading.Thread(
            target=httpd.serve_forever, args=(0.05,), name="tlc-test-server", daemon=True
        )
        thread.start()
        try:
            yield self
        finally:
            httpd.shutdown()
            httpd.server_close()
            thread.join(timeout=5)


def _handler_for(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:
            self._answer(send_body=True)

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def _answer(self, *, send_body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            scripted = server._record(RecordedRequest(self.command, path, dict(self.headers)))
            file = server.root / path.lstrip("/")
            if scripted is not None and scripted.delay_seconds:
                time.sleep(scripted.delay_seconds)
            if scripted is not None and scripted.status is None and scripted.truncate_to is None:
                scripted = None
            if scripted is not None and scripted.truncate_to is None:
                self._send(scripted.status or 200, scripted.body, scripted.headers, send_body)
                return
            if not file.is_file() or not file.resolve().is_relative_to(server.root.resolve()):
                self._send(404, b"Not Found", {"Content-Type": "text/plain"}, send_body)
                return
            content = file.read_bytes()
            headers = {"Content-Type": "application/octet-stream"}
            if server.send_validators:
                headers["ETag"] = server._etag(path, file)
                headers["Last-Modified"] = formatdate(file.stat().st_mtime, usegmt=True)
            if scripted is not None and scripted.truncate_to is not None:
                # Announce the whole file, send part of it, then drop the connection.
                self.send_response(200)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                if send_body:
                    self.wfile.write(content[: scripted.truncate_to])
                    self.wfile.flush()
                self.close_connection = True
                return
            self._send(200, content, headers, send_body)

        def _send(self, status: int, body: bytes, headers: dict[str, str], send_body: bool) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if send_body:
                self.wfile.write(body)

    return Handler


@contextmanager
def silent_server() -> Iterator[tuple[str, list[tuple[float, str]]]]:
    """A loopback server that accepts connections and never answers; yields its URL and, for every
    connection, the `time.monotonic()` it was accepted and its request line (once read)."""
    accepted: list[tuple[float, str]] = []
    connections: list[socket.socket] = []
    stop = threading.Event()

    def read_request_line(connection: socket.socket, moment: float) -> None:
        connection.settimeout(5)
        try:
            line = connection.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace")
        except OSError:
            line = ""
        accepted.append((moment, line))  # the connection stays open, never answered

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.settimeout(0.2)

        def accept() -> None:
            while not stop.is_set():
                try:
                    connection, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                connections.append(connection)
                threading.Thread(
                    target=read_request_line, args=(connection, time.monotonic()), daemon=True
                ).start()

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
        finally:
            stop.set()
            thread.join(timeout=5)
            for connection in connections:
                connection.close()


@contextmanager
def silent_url() -> Iterator[str]:
    """A loopback URL whose socket accepts connections (the kernel completes them, up to its
    backlog) and never answers; nothing is recorded."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
