"""A throwaway HTTP server on 127.0.0.1 for the fake providers the tests start and stop.

Subclass :class:`LocalHttpServer` and implement :meth:`respond`: it gets each POST's path,
headers (lower-case names) and body, and returns what to answer (status, headers, body, a delay
before answering). :meth:`finished` runs after each answer went out (or the client left).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Answer:
    """What the server answers to one request."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


class LocalHttpServer:
    """Serves on 127.0.0.1 (an ephemeral port) in a daemon thread until :meth:`close`."""

    def __init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                answer = fake.respond(self.path, headers, body)
                try:
                    if answer.delay_s:
                        time.sleep(answer.delay_s)
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer.body)))
                    for k, v in answer.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(answer.body)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass
                finally:
                    fake.finished()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def respond(self, path: str, headers: dict[str, str], body: bytes) -> Answer:
        """The answer to one POST (runs in the server's request thread)."""
        raise NotImplementedError

    def finished(self) -> None:
        """After each answer (override to count requests in flight)."""

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
