"""A real local webhook receiver (``http.server`` on 127.0.0.1 in a thread) for tests and smoke checks.

It verifies Standard Webhooks signatures with :func:`alerts.webhooks.verify`, can answer a number of
503s first (a receiver having a bad time), and deduplicates on ``webhook-id`` the way a production
receiver should: :attr:`accepted` holds each id once, :attr:`requests` every request seen.

    >>> from alerts.webhooks import signed_headers
    >>> import requests
    >>> with LocalReceiver(secret="whsec_c2VjcmV0c2VjcmV0") as receiver:
    ...     headers = signed_headers("whsec_c2VjcmV0c2VjcmV0", "msg_1", b"{}")
    ...     requests.post(receiver.url, data=b"{}", headers=headers, timeout=5).status_code
    204
    >>> list(receiver.accepted)
    ['msg_1']
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from alerts.webhooks import WebhookVerificationError, verify


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the receiver saw it, with the verdict."""

    headers: dict[str, str]
    body: bytes
    status: int
    reason: str


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a receiver started later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalReceiver:
    """See the module docstring. ``fail_first`` requests get ``fail_status`` before any is accepted."""

    def __init__(self, secret: str | None = None, *, port: int = 0, fail_first: int = 0,
                 fail_status: int = 503, tolerance_s: float = 300) -> None:
        self.secret = secret
        self.fail_left = fail_first
        self.fail_status = fail_status
        self.tolerance_s = tolerance_s
        self.requests: list[ReceivedRequest] = []
        self.accepted: dict[str, bytes] = {}
        self.duplicates = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/alerts"

    def start(self) -> LocalReceiver:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LocalReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def handle(self, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        """Decide the answer to one request (called from the server thread)."""
        with self._lock:
            if self.fail_left > 0:
                self.fail_left -= 1
                status, reason = self.fail_status, "configured failure"
            else:
                status, reason = self._verdict(headers, body)
            self.requests.append(ReceivedRequest(headers, body, status, reason))
        return status, reason

    def _verdict(self, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        if self.secret is not None:
            try:
                verify(self.secret, headers, body, tolerance_s=self.tolerance_s)
            except WebhookVerificationError as error:
                return 401, f"{type(error).__name__}: {error}"
        webhook_id = headers.get("webhook-id", "")
        if webhook_id in self.accepted:
            self.duplicates += 1
            return 204, "duplicate (already processed)"
        self.accepted[webhook_id] = body
        return 204, "accepted"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length_text = (self.headers.get("content-length") or "0").strip(" \t")
                if not (length_text.isascii() and length_text.isdigit() and len(length_text) <= 12):
                    self.send_response(400)  # int() would take "٣" or "+3": a length must be ASCII digits
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                body = self.rfile.read(int(length_text))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, _ = receiver.handle(headers, body)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return  # keep test output clean

        return Handler
