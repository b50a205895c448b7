"""A real loopback HTTP server that fails as scripted, then recovers (for the retry tests)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Flaky(ThreadingHTTPServer):
    """Answers the scripted statuses in turn (0: drop the connection without an answer), then `done` (200: ``ok``)."""

    def __init__(self, port: int, script: list[int], done: int = 200) -> None:
        self.script, self.done, self.seen = list(script), done, list[str]()
        super().__init__(("127.0.0.1", port), Handler)


class Handler(BaseHTTPRequestHandler):
    server: Flaky

    def do_GET(self) -> None:
        self.answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.answer()

    def answer(self) -> None:
        self.server.seen.append(self.command)
        status = self.server.script.pop(0) if self.server.script else self.server.done
        if status == 0:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        body = {200: b"ok", 204: b""}.get(status, b'{"code": "error", "message": "try later"}')
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(server: Flaky) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


@contextmanager
def flaky_server() -> Iterator[Flaky]:
    """A `Flaky` server on a free port, serving for the duration of the block (script it through its attributes)."""
    server = Flaky(free_port(), [])
    serve(server)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
