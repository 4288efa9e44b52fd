"""Real receivers on 127.0.0.1 for alert tests: an HTTP webhook endpoint and an SMTP server."""

import contextlib
import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword

from ml_assets_tests.http_fixtures import LoopbackHTTPServer
from ml_assets_tests.processes import free_port


@dataclass
class ReceivedPost:
    path: str
    payload: Any


@dataclass
class WebhookServer:
    """Records every JSON POST; answers each path with scripted statuses, then 200."""

    base_url: str = ""
    posts: list[ReceivedPost] = field(default_factory=list)
    scripted: dict[str, list[int]] = field(default_factory=dict)

    def fail_next(self, path: str, statuses: list[int]) -> None:
        self.scripted[path] = list(statuses)

    def payloads(self, path: str) -> list[Any]:
        return [post.payload for post in self.posts if post.path == path]


@contextlib.contextmanager
def webhook_server() -> Iterator[WebhookServer]:
    state = WebhookServer()
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                state.posts.append(ReceivedPost(self.path, json.loads(body)))
                statuses = state.scripted.get(self.path)
                status = statuses.pop(0) if statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = LoopbackHTTPServer(("127.0.0.1", 0), Handler)
    state.base_url = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass
class MailServer:
    """An SMTP server requiring a login (`user` / `password`); keeps every accepted message."""

    port: int
    user: str
    password: str
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)


@contextlib.contextmanager
def smtp_server(user: str = "alerts", password: str = "smtp-s3cret") -> Iterator[MailServer]:
    state = MailServer(port=free_port(), user=user, password=password)

    class Handler:
        async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:
            state.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            state.messages.append(message_from_bytes(envelope.content, policy=policy.default))
            return "250 OK"

    def authenticate(
        server: object, session: object, envelope: object, mechanism: str, data: LoginPassword
    ) -> AuthResult:
        ok = data.login == user.encode() and data.password == password.encode()
        return AuthResult(success=ok)

    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=state.port,
        authenticator=authenticate,
        # Loopback only, no TLS certificate to offer: allow AUTH over plain SMTP here.
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield state
    finally:
        controller.stop()
